"""Audio: loading, the shared DSP front end, procedural audio, capture sources and windows."""
