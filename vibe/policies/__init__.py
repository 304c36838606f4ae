"""Policies: the `Policy` protocol (policy.py) and, built on it, trained policies loaded from checkpoints."""
