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

from vibe.envs import gymnax_env, image_wrappers, pixel_cartpole, pixel_pendulum
from vibe.envs.config import WrapperConfig
from vibe.envs.env import Env

# vibe's envs: id -> factory returning (env, default params).
VIBE_ENVS: dict[str, Callable[[], tuple[Env, Any]]] = {
    pixel_cartpole.ENV_ID: pixel_cartpole.make,
    pixel_pendulum.ENV_ID: pixel_pendulum.make,
}
# gymnax ids that must not be built here, and why.
EXCLUDED = {"MNISTBandit-bsuite": "it downloads MNIST when built; vibe runs offline"}


def _gymnax_ids() -> list[str]:
    gymnax = gymnax_env.import_gymnax()  # lazily: see the module docstring
    return [name for name in gymnax.registered_envs if name not in EXCLUDED]


def env_ids() -> list[str]:
    """Every id ``make`` accepts: vibe's first, then gymnax's."""
    return [*VIBE_ENVS, *_gymnax_ids()]


def make(env_id: str, wrappers: WrapperConfig | None = None) -> tuple[Env, Any]:
    """``(env, default params)`` for ``env_id`` with ``wrappers`` applied; the env does not auto-reset
    (wrap it with ``wrappers.for_training``, above the observation wrappers).

    Raises:
        ValueError: for an unknown or excluded id, naming the closest known ids, or wrappers the env's
            observations do not fit (naming the ``WrapperConfig`` field).
    """
    env, params = _make_plain(env_id)
    return apply_wrappers(env, params, wrappers or WrapperConfig()), params


def apply_wrappers(env: Env, params: Any, config: WrapperConfig) -> Env:
    """``env`` (plain: no auto-reset) under ``config``'s wrappers, innermost first: crop → resize → grayscale →
    invert → frame stack.

    Raises:
        ValueError: naming the ``WrapperConfig`` field whose wrapper cannot read the observations.
    """
    steps: list[tuple[str, Callable[[Env], Env]]] = []
    if config.crop is not None:
        top, left, height, width = config.crop
        steps.append(("crop", lambda e: image_wrappers.Crop(e, top, left, height, width)))
    if config.resize is not None:
        height, width = config.resize
        steps.append(("resize", lambda e: image_wrappers.ResizeWithPad(e, height, width)))
    if config.grayscale:
        steps.append(("grayscale", image_wrappers.Grayscale))
    if config.invert:
        steps.append(("invert", image_wrappers.Invert))
    if config.frame_stack > 1:
        steps.append(("frame_stack", lambda e: image_wrappers.FrameStack(e, config.frame_stack)))
    for field, wrap in steps:
        env = wrap(env)
        try:
            env.observation_space(params)
        except ValueError as e:
            flag = "--wrappers." + field.replace("_", "-")
            raise ValueError(f"WrapperConfig.{field}: {e}; change or drop {flag} for this env") from e
    return env


def _make_plain(env_id: str) -> tuple[Env, Any]:
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
