"""Environments: spaces, the Env protocol, the gymnax adapter, wrappers and evaluation."""
