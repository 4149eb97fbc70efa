"""Latent walk, generator stepping, post-processing, pygame display and headless sinks."""
