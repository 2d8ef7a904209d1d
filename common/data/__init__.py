"""Data: joint layouts, the pose codec, cameras, dataset readers, synthetic data, windows."""
