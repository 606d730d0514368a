"""``bench``: latency, FPS and runner overhead per artifact."""
