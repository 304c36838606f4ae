"""Datasets for offline RL and imitation: LeRobot reader/writer, transforms, norm stats, loaders."""
