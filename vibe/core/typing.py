"""Array type aliases, imported as ``from vibe.core import typing as at``.

Annotate arrays as ``at.Float[at.Array, "t n obs"]``. Dimension names used
across vibe (one meaning each, everywhere):

- ``b``: batch (a minibatch of samples, or a batch of episodes in evaluation)
- ``t``: time (steps of a rollout)
- ``n``: parallel environments
- ``obs``: observation features (flat observations)
- ``act``: action features (continuous actions); discrete actions have no axis
- ``a``: number of discrete actions (the logits axis)

Shapes are documented by these annotations and checked in tests (with
``jaxtyping.jaxtyped(typechecker=beartype)``), never on hot paths.
"""

from jaxtyping import Array, ArrayLike, Bool, Float, Int, Integer, Num, PRNGKeyArray, PyTree, Real, Shaped, UInt

# A PRNG key: either a raw ``uint32[2]`` key from ``jax.random.PRNGKey`` (what
# vibe stores in train states, because it checkpoints as a plain array) or a
# typed key from ``jax.random.key``.
Key = PRNGKeyArray

__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "Float",
    "Int",
    "Integer",
    "Key",
    "Num",
    "PRNGKeyArray",
    "PyTree",
    "Real",
    "Shaped",
    "UInt",
]
