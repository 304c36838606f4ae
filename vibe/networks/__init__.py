"""Neural network modules (flax.linen)."""
