"""Window -> features -> encoder -> projection -> smoothed EmotionState."""
