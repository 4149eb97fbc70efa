"""Bundle room: export to a model bundle, bundle evaluation and the default recipe (audio and art halves)."""
