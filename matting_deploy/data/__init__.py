"""Every way an input enters: images, PPM pairs and clips, frame folders, videos, preprocessing."""
