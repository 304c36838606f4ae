"""Checkpoints over orbax: `params`, `train_state` and `assets` items, exact resume."""
