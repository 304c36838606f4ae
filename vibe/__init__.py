"""vibe: a JAX reinforcement-learning library."""
