"""Array typing aliases and small shared records (no flax, no optax)."""
