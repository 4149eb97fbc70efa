"""Synesthesia trainer: datasets, procedural corpora, training loops, evaluation and bundle export."""
