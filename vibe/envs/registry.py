"""One place to build an env by id: ``make("CartPole-v1")``, ``make("PixelCartPole-v1")``.

vibe's pixel envs: ``PixelCartPole-v1`` and ``PixelPendulum-v1`` (64 x 64 RGB uint8;
other sizes through their constructors).

vibe's own envs are listed in ``VIBE_ENVS``; every other id is gymnax's
(through ``gymnax_env.make``, so MinAtar comes with bool image observations).
gymnax is imported only when a gymnax id is asked for: importing it starts
JAX's backend, which a multi-host run must initialise first.
"""

import difflib
from collections.abc import Callable
from typing import Any

from vibe.envs import gymnax_env, pixel_cartpole, pixel_pendulum
from vibe.envs.env import Env

# vibe's envs: id -> factory returning (env, default params).
VIBE_ENVS: dict[str, Callable[[], tuple[Env, Any]]] = {
    pixel_cartpole.ENV_ID: pixel_cartpole.make,
    pixel_pendulum.ENV_ID: pixel_pendulum.make,
}
# gymnax ids that must not be built here, and why.
EXCLUDED = {"MNISTBandit-bsuite": "it downloads MNIST when built; vibe runs offline"}


def _gymnax_ids() -> list[str]:
    import gymnax  # lazily: see the module docstring

    return [name for name in gymnax.registered_envs if name not in EXCLUDED]


def env_ids() -> list[str]:
    """Every id ``make`` accepts: vibe's first, then gymnax's."""
    return [*VIBE_ENVS, *_gymnax_ids()]


def make(env_id: str) -> tuple[Env, Any]:
    """``(env, default params)`` for ``env_id``; the env does not auto-reset (wrap it with ``wrappers.for_training``).

    Raises:
        ValueError: for an unknown or excluded id, naming the closest known ids.
    """
    if env_id in VIBE_ENVS:
        return VIBE_ENVS[env_id]()
    if env_id in EXCLUDED:
        raise ValueError(f"env id {env_id!r} is not available: {EXCLUDED[env_id]}.")
    known = env_ids()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
        hint = f"Did you mean {', '.join(close)}?" if close else f"Known ids: {', '.join(known)}."
        raise ValueError(f"unknown env id {env_id!r}. {hint}")
    return gymnax_env.make(env_id)
