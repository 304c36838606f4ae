"""Implicit Q-learning from a LeRobot dataset."""
