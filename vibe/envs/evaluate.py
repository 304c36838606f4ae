"""Policy evaluation: run a batch of full episodes without auto-reset.

JAX only (no flax): the policy arrives as a function, so runners, tests and
benchmarks share this with any algorithm. Wrap the call in ``jax.jit`` (with
the policy's params as an argument, not a constant) to compile it once.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from vibe.core import typing as at
from vibe.envs.env import Env

# A policy maps a batch of observations [b, obs] and a key to actions [b, ...].
PolicyFn = Callable[[Any, at.Key], at.Array]


def _keep_where(done: at.Bool[at.Array, " b"], old: at.Array, new: at.Array) -> at.Array:
    """``old`` where ``done`` else ``new``, broadcasting ``done`` over trailing axes."""
    return jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new)


def evaluate(
    env: Env,
    env_params: Any,
    policy_fn: PolicyFn,
    key: at.Key,
    num_episodes: int = 32,
    max_steps: int = 100_000,
) -> at.Float[at.Array, " b"]:
    """Returns of ``num_episodes`` episodes run side by side until each ends.

    ``env`` must not auto-reset (pass the plain env, e.g. ``GymnaxEnv``): each
    episode runs until its first ``terminated | truncated`` (CartPole-v1
    truncates at 500 steps), then its env is frozen and its return stops
    growing. The loop stops when all episodes are done or after ``max_steps``
    steps (a guard for envs without a time limit).

    Args:
        env: a single, non-auto-resetting env; it is vmapped here.
        env_params: the env's params.
        policy_fn: ``(obs [b, obs], key) -> actions [b, ...]`` with ``b = num_episodes``.
        key: PRNG key for resets, env steps and the policy.
        num_episodes: episodes to run in parallel (``b``).
        max_steps: upper bound on the steps of one episode.

    Returns:
        float32 ``[b]`` undiscounted returns.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
    reset_key, key = jax.random.split(key)
    state, timestep = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), env_params)
    done = jnp.zeros((num_episodes,), jnp.bool_)
    returns = jnp.zeros((num_episodes,), jnp.float32)
    carry = (state, timestep.obs, done, returns, key, jnp.zeros((), jnp.int32))

    def cond(carry: Any) -> at.Bool[at.Array, ""]:
        _, _, done, _, _, t = carry
        return ~jnp.all(done) & (t < max_steps)

    def body(carry: Any) -> Any:
        state, obs, done, returns, key, t = carry
        key, policy_key, step_key = jax.random.split(key, 3)
        action = policy_fn(obs, policy_key)
        step_keys = jax.random.split(step_key, num_episodes)
        next_state, timestep = jax.vmap(env.step, in_axes=(0, 0, 0, None))(step_keys, state, action, env_params)
        returns = returns + jnp.where(done, 0.0, timestep.reward)
        # Finished envs keep their last state: stepping past a terminal state is undefined.
        state = jax.tree.map(lambda old, new: _keep_where(done, old, new), state, next_state)
        obs = jax.tree.map(lambda old, new: _keep_where(done, old, new), obs, timestep.obs)
        done = done | timestep.terminated | timestep.truncated
        return state, obs, done, returns, key, t + 1

    _, _, _, returns, _, _ = jax.lax.while_loop(cond, body, carry)
    return returns
