"""Training: the engine, optimisers and schedules, distributed helpers, checkpoints."""
