"""Proximal Policy Optimisation (Schulman et al. 2017), discrete actions."""
