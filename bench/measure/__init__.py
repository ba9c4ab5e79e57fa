"""Measurement harness: FLOPs, FPS, peak memory and scaling, each case in its own process."""
