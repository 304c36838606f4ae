"""DQN's math: double-Q TD targets, the Huber Q loss, the epsilon schedule, target updates.

Pure functions of arrays (and of a Q-function for ``q_loss``), so tests check
them against hand-computed values.
"""

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from vibe.core import typing as at

LossMetrics = dict[str, at.Array]
# (params, obs [..., obs]) -> Q-values [..., a]
QFn = Callable[[Any, at.Array], at.Array]


@flax.struct.dataclass
class ReplayItem:
    """One transition as the replay buffer stores it (a batch adds a leading ``b``).

    Attributes:
        obs: observation the action was taken in.
        action: int32 action taken.
        reward: float32 reward received.
        terminated: the step reached a terminal MDP state: the next state's value is 0.
            A time-limit truncation is NOT terminated: its target bootstraps from ``next_obs``.
        next_obs: the true next observation (the episode's final observation when it
            ended, never the observation after an auto-reset).
    """

    obs: at.Array
    action: at.Int[at.Array, "..."]
    reward: at.Float[at.Array, "..."]
    terminated: at.Bool[at.Array, "..."]
    next_obs: at.Array


def linear_epsilon(
    env_steps: at.Int[at.Array, ""], start_e: float, end_e: float, duration: int
) -> at.Float[at.Array, ""]:
    """Epsilon of epsilon-greedy after ``env_steps`` env steps (Mnih et al. 2015's linear annealing).

    ``start_e + (end_e - start_e) * min(env_steps / duration, 1)``: ``start_e`` at
    step 0, ``end_e`` from ``duration`` on (immediately when ``duration == 0``).
    """
    if duration <= 0:
        return jnp.full((), end_e, jnp.float32)
    fraction = jnp.minimum(env_steps.astype(jnp.float32) / duration, 1.0)
    return jnp.asarray(start_e + (end_e - start_e) * fraction, jnp.float32)


def double_q_targets(
    reward: at.Float[at.Array, " b"],
    terminated: at.Bool[at.Array, " b"],
    next_q_online: at.Float[at.Array, "b a"],
    next_q_target: at.Float[at.Array, "b a"],
    gamma: float,
) -> at.Float[at.Array, " b"]:
    """Double-DQN TD targets (van Hasselt et al. 2016, eq. 4).

    ``y = r + gamma * (1 - terminated) * Q_target(s', argmax_a Q_online(s', a))``:
    the online network picks the next action, the target network evaluates it.
    Truncated transitions are not terminated, so they bootstrap from ``s'``.
    """
    next_action = jnp.argmax(next_q_online, axis=-1)
    next_value = jnp.take_along_axis(next_q_target, next_action[:, None], axis=-1)[:, 0]
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_value


def q_loss(
    q_fn: QFn, params: Any, target_params: Any, batch: ReplayItem, gamma: float, huber_delta: float
) -> tuple[at.Float[at.Array, ""], LossMetrics]:
    """Mean Huber loss between Q_online(s, a) and the (constant) double-Q target.

    The online network runs once on ``[obs; next_obs]`` (one batched pass of
    ``2b`` rows); only the ``obs`` half carries gradients.

    Returns:
        ``(loss, {"loss/q", "q/mean"})``; ``q/mean`` is the mean Q(s, a) taken.
    """
    b = batch.reward.shape[0]
    q_both = q_fn(params, jnp.concatenate([batch.obs, batch.next_obs], axis=0))
    q, next_q_online = q_both[:b], jax.lax.stop_gradient(q_both[b:])
    next_q_target = q_fn(target_params, batch.next_obs)
    targets = jax.lax.stop_gradient(
        double_q_targets(batch.reward, batch.terminated, next_q_online, next_q_target, gamma)
    )
    q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    loss = optax.huber_loss(q_taken, targets, delta=huber_delta).mean()
    return loss, {"loss/q": loss, "q/mean": q_taken.mean()}


def update_target(
    params: Any, target_params: Any, gradient_steps: at.Int[at.Array, ""], interval: int, tau: float
) -> Any:
    """The target network after gradient step number ``gradient_steps`` (1-based).

    Every ``interval`` gradient steps: ``target <- tau * online + (1 - tau) * target``
    (Polyak averaging, Lillicrap et al. 2016); ``tau == 1.0`` copies exactly
    (Mnih et al. 2015's periodic hard update). Other steps leave it unchanged.
    """
    due = gradient_steps % interval == 0
    if tau == 1.0:
        return jax.tree.map(lambda p, t: jnp.where(due, p, t), params, target_params)
    return jax.tree.map(lambda p, t: jnp.where(due, tau * p + (1.0 - tau) * t, t), params, target_params)
