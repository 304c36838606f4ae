"""Behaviour cloning from a LeRobot dataset."""
