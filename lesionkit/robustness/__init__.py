"""Robustness to image corruptions: the corruption registry, test-time sweeps and the training protocols."""
