"""The seam between the runner and an algorithm, and what every algorithm shares.

An algorithm is a frozen dataclass built once per run (its *static record*: config, env, networks,
optimizer, buffer spec) with methods of one shape in every algorithm::

    algo = PPO.make(config, env, env_params)   # or DQN / SAC; builds everything static once
    state = algo.init(key)                     # State: a pytree of arrays, everything a run needs
    state, metrics = algo.train_step(state)    # one update; jit/scan/vmap it freely
    actions = algo.act(params, obs, key, greedy=True)

``PPO.train_step(static, state)`` is the same call unbound. The runner jits, donates, shards,
checkpoints and evaluates through this protocol alone, so an algorithm that learns from a dataset
plugs in the same way as one that steps envs.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol, Self

import jax
import jax.numpy as jnp

from vibe.algorithms.metrics import Metrics
from vibe.core import typing as at
from vibe.envs import evaluate as evaluation
from vibe.envs import spaces, wrappers
from vibe.envs.env import Env

# How the runner places each leaf of a state on the device mesh (``State.roles``):
#   "batch": split along its env/batch axis over every device (env states and observations);
#   "replicated": the same on every device (statistics shared by all envs);
#   "fsdp": the FSDP rule (parameters, optimizer moments, buffers: split when large, else replicated).
Role = Literal["batch", "replicated", "fsdp"]
# (obs [b, ...], key) -> actions [b, ...]
PolicyFn = Callable[[at.Array, at.Key], at.Array]


class StepsConfig(Protocol):
    """What the runner reads of an algorithm's config: the run's length."""

    @property
    def num_updates(self) -> int: ...

    @property
    def steps_per_update(self) -> int: ...


class State(Protocol):
    """What the runner needs of a state record: the parameters a policy needs, and ``replace``."""

    params: Any

    def replace(self, **changes: Any) -> Self: ...


class Algorithm(Protocol):
    """What the runner drives (see the module docstring)."""

    name: ClassVar[str]  # short name for logs and assets, e.g. "ppo"

    @property
    def config(self) -> Any:
        """The algorithm's config dataclass."""
        ...

    @property
    def env(self) -> Env:
        """The plain env (no auto-reset): evaluation runs on it."""
        ...

    @property
    def env_params(self) -> Any: ...

    @property
    def num_updates(self) -> int:
        """``train_step`` calls in a full run."""
        ...

    @property
    def steps_per_update(self) -> int:
        """Env steps (all envs together) one ``train_step`` takes: the unit of the logged ``step``."""
        ...

    def init(self, key: at.Key) -> Any: ...

    def train_step(self, state: Any) -> tuple[Any, Metrics]: ...

    def act(self, params: Any, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        """Env actions for network-input observations ``obs [b, ...]`` (see ``policy_input``)."""
        ...

    def policy_input(self, obs_stats: Any, obs: at.Array) -> at.Array:
        """The network input for raw observations of the plain env: normalised with ``obs_stats`` (frozen;
        from ``obs_stats(state)`` or a checkpoint's assets) when the algorithm normalises observations."""
        ...

    def obs_stats(self, state: Any) -> Any:
        """The observation-normalisation statistics a policy needs besides ``params`` (None if unused)."""
        ...

    def roles(self, state: Any) -> Any:
        """A pytree like ``state`` with a ``Role`` per leaf (or per subtree)."""
        ...

    def evaluate(self, state: Any, key: at.Key, num_episodes: int) -> at.Float[at.Array, " e"]:
        """Greedy returns of ``num_episodes`` episodes of the plain env (jittable, vmappable)."""
        ...


@dataclasses.dataclass(frozen=True)
class OnlineAlgorithm[ConfigT: StepsConfig]:
    """What the online algorithms share: the fields every static record starts with, the run's length,
    evaluation, the default input and roles. Subclasses are frozen dataclasses that add their networks
    and define ``init``, ``train_step`` and ``act``."""

    config: ConfigT
    env: Env  # the plain env, used as is for evaluation
    env_params: Any
    vec_env: Env  # num_envs training envs: auto-reset and episode statistics above the vectorised env

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.config.steps_per_update

    def act(self, params: Any, obs: at.Array, key: at.Key, *, greedy: bool) -> at.Array:
        raise NotImplementedError

    def policy_input(self, obs_stats: Any, obs: at.Array) -> at.Array:
        return obs

    def obs_stats(self, state: Any) -> Any:
        return None

    def roles(self, state: Any) -> Any:
        """Env states and observations split over devices, everything else by the FSDP rule."""
        batch = {"env_state": "batch", "obs": "batch"}
        return state.replace(**{f.name: batch.get(f.name, "fsdp") for f in dataclasses.fields(state)})

    def evaluate(self, state: Any, key: at.Key, num_episodes: int) -> at.Float[at.Array, " e"]:
        def policy(obs: at.Array, key: at.Key) -> at.Array:
            return self.act(state.params, self.policy_input(self.obs_stats(state), obs), key, greedy=True)

        return evaluation.evaluate(self.env, self.env_params, policy, key, num_episodes=num_episodes)


def training_env(env: Env, env_params: Any, num_envs: int, *, owner: str) -> Env:
    """``num_envs`` copies of ``env`` with auto-reset and episode statistics above the vectorised env
    (``wrappers.vectorize(wrappers.for_training(env), n)``: resets run only on steps where an env is
    done). Raises if something below strips the info keys the algorithms read."""
    vec_env = wrappers.vectorize(wrappers.for_training(env), num_envs)
    _, timestep = jax.eval_shape(vec_env.reset, jax.random.PRNGKey(0), env_params)  # traces, computes nothing
    missing = {"final_obs", "episode_return", "episode_length", "done"} - set(timestep.info)
    if missing:
        raise ValueError(f"{owner}'s training env lacks info keys {sorted(missing)}; a wrapper drops them.")
    return vec_env


def strong(x: at.Array) -> at.Array:
    """``x`` with a strong dtype. flashbax and optax start some counters as weak-typed ``jnp.array(0)``;
    a weak-typed leaf in a jitted, looped train state recompiles once it comes back strong (restored)."""
    return jnp.asarray(x, dtype=jnp.asarray(x).dtype)


def counter() -> at.Int[at.Array, ""]:
    """A fresh int32 zero. Each counter gets its own buffer: the runner donates the state, and XLA
    refuses to donate one buffer twice."""
    return jnp.zeros((), jnp.int32)


def example_obs(space: spaces.Space) -> at.Array:
    """Zeros of one observation, for network init."""
    return jnp.zeros(space.shape, space.dtype)
