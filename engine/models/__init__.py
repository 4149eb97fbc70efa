"""Network definitions (encoders, projections, generator) and the model bundle reader/writer."""
