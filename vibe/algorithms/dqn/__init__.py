"""Deep Q-Networks (Mnih et al. 2015) with double-Q targets (van Hasselt et al. 2016), discrete actions."""
