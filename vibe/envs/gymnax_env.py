"""Adapter from gymnax 1.0.1 environments to vibe's ``Env`` protocol.

gymnax's own ``step`` auto-resets and hides the final observation of an
episode inside its info; vibe wants a plain env that does not reset by itself
(``AutoReset`` in wrappers.py does that explicitly). So the adapter calls the
underlying ``step_env`` (five values: obs, state, reward, terminated, info) and
``is_truncated(state, params)`` directly, keeping terminated (a terminal MDP
state: do not bootstrap) and truncated (the time limit: bootstrap) apart.

MinAtar (``Breakout-MinAtar``, ``SpaceInvaders-MinAtar``, ``Asterix-MinAtar``,
``Freeway-MinAtar``, ``Seaquest-MinAtar``): gymnax 1.0.1 builds each frame as
bool feature planes and returns it cast to float32 0/1, declared as a float
``Box(0, 1)``. The adapter casts it back to bool (lossless) and declares
``Image(10, 10, C, dtype=bool)``: a replay buffer then stores 1 byte per pixel
instead of 4, and encoders know the planes are binary. bool rather than uint8
because uint8 images mean intensities in [0, 255] here (``NormalizeImage``
maps 255 to 1), which would squash a 0/1 plane to [-1, -0.99].
"""

import dataclasses
import difflib
import importlib
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at
from vibe.core.types import TimeStep
from vibe.envs import spaces

# The classic-control tasks vibe uses and tests; any other id gymnax registers
# also works as long as its spaces are Discrete or Box.
CLASSIC_CONTROL = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0")
# Pixel-like MinAtar games: [10, 10, C] binary planes, observed as bool images (see the module docstring).
MINATAR = ("Breakout-MinAtar", "SpaceInvaders-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar")


# Modules gymnax imports at its own import for its renderers only (gymnax/environments/misc/*.py), never used
# to step an env: seaborn (with pandas) took 1.5 s and pyplot 0.45 s of the 2.1 s `import gymnax` here.
_RENDERING_ONLY = ("seaborn", "matplotlib.pyplot")


class _Deferred(types.ModuleType):
    """Stands in for a module that gymnax imports but uses only to render: the real module is imported at the
    first attribute read (a render call). ``importlib.util.LazyLoader`` cannot do this here: CPython's import
    statement reads ``__spec__``, which makes a lazy module load at once."""

    def __getattr__(self, attr: str) -> Any:
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def import_gymnax() -> Any:
    """``import gymnax``, with seaborn and pyplot deferred (``_Deferred``) during that import only: other code
    that imports them afterwards gets the real modules."""
    if "gymnax" in sys.modules:
        return sys.modules["gymnax"]
    deferred = [name for name in _RENDERING_ONLY if name not in sys.modules]
    for name in deferred:
        sys.modules[name] = _Deferred(name)
    try:
        import gymnax
    finally:
        for name in deferred:
            if isinstance(sys.modules.get(name), _Deferred):
                del sys.modules[name]
    return gymnax


def convert_space(space: Any) -> spaces.Discrete | spaces.Box:
    """Converts a gymnax ``Discrete``/``Box`` to the vibe space with the same (real) bounds."""
    import_gymnax()  # see GymnaxEnv.__post_init__
    from gymnax.environments import spaces as gymnax_spaces

    if isinstance(space, gymnax_spaces.Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, gymnax_spaces.Box):
        return spaces.Box(np.asarray(space.low), np.asarray(space.high), tuple(space.shape), np.dtype(space.dtype))
    raise ValueError(
        f"gymnax space {space!r} has no vibe equivalent; only Discrete and Box are supported "
        "(wrap the env to flatten its observations first)."
    )


def _strong(x: Any) -> at.Array:
    # gymnax builds some state leaves from Python scalars (CartPole's time=0), which
    # become weak-typed arrays; a weak-typed leaf in a jitted train state forces a
    # recompile once the step returns the strong type, so fix the type up front.
    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)


@dataclasses.dataclass(frozen=True)
class GymnaxEnv:
    """A gymnax environment behind the ``Env`` protocol; does NOT auto-reset.

    Two adapters with the same name compare equal, so passing one as a static
    argument to ``jit`` reuses compiled code.

    Attributes:
        name: a gymnax environment id, e.g. ``"CartPole-v1"``.
    """

    name: str
    _env: Any = dataclasses.field(init=False, repr=False, compare=False)

    @property
    def binary_planes(self) -> bool:
        """True for MinAtar: observations are bool ``[10, 10, C]`` images."""
        return self.name in MINATAR

    def _observe(self, obs: at.Array) -> at.Array:
        # gymnax's MinAtar frames are float32 0/1 (built as bool, then cast): back to 1 byte a pixel.
        return obs.astype(jnp.bool_) if self.binary_planes else obs

    def __post_init__(self) -> None:
        # Imported here, not at the top: importing gymnax creates arrays, which starts JAX's backend,
        # and a multi-host run must call jax.distributed.initialize before that.
        gymnax = import_gymnax()

        if self.name not in gymnax.registered_envs:
            close = difflib.get_close_matches(self.name, gymnax.registered_envs, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Known classic control: {CLASSIC_CONTROL}."
            raise ValueError(f"env name {self.name!r} is not a gymnax environment.{hint}")
        env, _ = gymnax.make(self.name)
        object.__setattr__(self, "_env", env)

    @property
    def gymnax_env(self) -> Any:
        """The wrapped gymnax environment."""
        return self._env

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        obs, state = self._env.reset_env(key, params)
        timestep = TimeStep(
            obs=self._observe(obs),
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), jnp.bool_),
            truncated=jnp.zeros((), jnp.bool_),
            info={},
        )
        return jax.tree.map(_strong, state), timestep

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        obs, next_state, reward, terminated, _ = self._env.step_env(key, state, action, params)
        # gymnax counts time in the state; the limit is params.max_steps_in_episode.
        truncated = self._env.is_truncated(next_state, params)
        timestep = TimeStep(
            obs=self._observe(obs),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, jnp.bool_),
            truncated=jnp.asarray(truncated, jnp.bool_),
            info={},  # gymnax's "discount" is 1 - terminated: redundant, and reset has no info.
        )
        return jax.tree.map(_strong, next_state), timestep

    def observation_space(self, params: Any) -> spaces.Box:
        """A ``Box``; for MinAtar an ``Image(10, 10, C, dtype=bool)``."""
        # Spaces are static metadata: compute them eagerly even when called while
        # tracing (jit/vmap of an init), where gymnax's jnp bounds would be tracers.
        with jax.ensure_compile_time_eval():
            space = convert_space(self._env.observation_space(params))
        if not isinstance(space, spaces.Box):
            raise ValueError(f"{self.name} has a {space!r} observation space; vibe expects a Box.")
        if self.binary_planes:
            height, width, channels = space.shape
            return spaces.Image(height, width, channels, dtype=bool)
        return space

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        with jax.ensure_compile_time_eval():
            return convert_space(self._env.action_space(params))


def make(name: str) -> tuple[GymnaxEnv, Any]:
    """``(GymnaxEnv(name), its default params)``, mirroring ``gymnax.make``."""
    env = GymnaxEnv(name)
    return env, env.default_params
