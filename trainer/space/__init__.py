"""Shared-space room: the contrastive audio-art alignment, its audio sets and its data loading."""
