"""Evaluation: whole-sequence prediction, metrics and the datasets' protocols."""
