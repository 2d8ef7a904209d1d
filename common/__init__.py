"""UniLift common modules: datasets, windows, metrics, cameras, skeletons, engine."""
