"""Audio room: corpora, taxonomy, splits, augmentation, procedural voices, clip cache, training, reports."""
