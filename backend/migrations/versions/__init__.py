"""Migration scripts, applied in revision order; each one is written by hand and reviewed."""
