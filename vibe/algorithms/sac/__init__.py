"""Soft actor-critic (Haarnoja et al. 2018) for continuous, bounded actions."""
