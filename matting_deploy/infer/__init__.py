"""``infer``: alpha mattes and composites for an image, a folder of frames or a video."""
