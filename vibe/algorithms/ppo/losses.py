"""PPO's math: generalised advantage estimation and the clipped surrogate loss.

Pure functions of arrays (no networks, no optimizers), so tests check them
against hand-computed numbers. The action distributions are distrax's
(``vibe.networks.heads``).
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from vibe.core import typing as at


@flax.struct.dataclass
class PPOBatch:
    """Samples for the update, flattened over time and envs: every field has ``[b]`` in front.

    Attributes:
        obs: observations ``[b, obs]``.
        action: actions taken: int32 ``[b]`` (discrete) or float ``[b, act]`` (Box; the
            unclipped sample, whose log-probability ``log_prob`` is).
        log_prob: log pi_old(action | obs) of the behaviour policy ``[b]``.
        value: V_old(obs) of the behaviour critic ``[b]`` (centre of the value clip).
        advantage: GAE advantages ``[b]`` (normalised per minibatch in the loss).
        target: value targets ``advantage + value`` ``[b]``.
    """

    obs: at.Float[at.Array, "b obs"]
    action: at.Int[at.Array, " b"] | at.Float[at.Array, "b act"]
    log_prob: at.Float[at.Array, " b"]
    value: at.Float[at.Array, " b"]
    advantage: at.Float[at.Array, " b"]
    target: at.Float[at.Array, " b"]


def gae(
    rewards: at.Float[at.Array, "t n"],
    values: at.Float[at.Array, "t n"],
    next_values: at.Float[at.Array, "t n"],
    terminated: at.Bool[at.Array, "t n"],
    truncated: at.Bool[at.Array, "t n"],
    gamma: float,
    lam: float,
) -> tuple[at.Float[at.Array, "t n"], at.Float[at.Array, "t n"]]:
    """Generalised advantage estimation (Schulman et al. 2016, eqs. 11-16) with time limits.

    TD error, bootstrapping from the true next observation unless the episode
    terminated (eq. 11 with V(terminal) = 0):

        delta_t = r_t + gamma * V(next_obs_t) * (1 - terminated_t) - V(obs_t)

    Advantage, the exponentially weighted sum of TD errors (eq. 16) cut at every
    episode end, whether terminated or truncated (the next step belongs to a new
    episode after an auto-reset):

        A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1},  done_t = terminated_t | truncated_t

    with ``A_T = delta_T`` at the end of the rollout (its bootstrap is inside
    ``delta_T``). ``next_values`` are V of the observation each step really
    produced: after an auto-reset, V(info["final_obs"]), which is what makes a
    truncated step bootstrap correctly.

    Returns:
        ``(advantages, targets)``, both ``[t, n]``, ``targets = advantages + values``
        (the lambda-returns the critic regresses on).
    """
    not_terminated = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - (terminated | truncated).astype(values.dtype)
    deltas = rewards + gamma * next_values * not_terminated - values

    def backward(next_advantage: at.Array, xs: tuple[at.Array, at.Array]) -> tuple[at.Array, at.Array]:
        delta, continues = xs
        advantage = delta + gamma * lam * continues * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def ppo_loss(
    log_prob: at.Float[at.Array, " b"],
    entropy: at.Float[at.Array, " b"],
    value: at.Float[at.Array, " b"],
    batch: PPOBatch,
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
) -> tuple[at.Float[at.Array, ""], dict[str, Any]]:
    """PPO's clipped objective (Schulman et al. 2017, eqs. 7 and 9) on the new policy's outputs.

    With r = pi(a|s) / pi_old(a|s) and advantages normalised over the minibatch:

        L_policy  = -mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))
        L_value   = 0.5 * mean(max((V - target)^2, (V_old + clip(V - V_old, -eps, eps) - target)^2))
        L_entropy = mean(H(pi(.|s)))
        L         = L_policy + vf_coef * L_value - ent_coef * L_entropy

    ``approx_kl`` is the k3 estimator mean((r - 1) - log r) (Schulman 2020,
    "Approximating KL divergence"), a diagnostic only.

    The policy family enters only through ``log_prob`` and ``entropy``, so the
    same loss serves discrete and continuous actions.

    Args:
        log_prob: log pi(batch.action | batch.obs) under the new policy.
        entropy: H(pi(.|batch.obs)) of the new policy, per sample.
        value: new critic values for ``batch.obs``.
        batch: the minibatch (old log-probs, old values, advantages, targets).

    Returns:
        ``(total, metrics)`` with metrics ``loss/total``, ``loss/policy``,
        ``loss/value``, ``loss/entropy``, ``loss/approx_kl`` (scalars).
    """
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    advantage = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    policy_loss = -jnp.minimum(ratio * advantage, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage).mean()

    value_clipped = batch.value + jnp.clip(value - batch.value, -clip_eps, clip_eps)
    value_loss = 0.5 * jnp.maximum(jnp.square(value - batch.target), jnp.square(value_clipped - batch.target)).mean()

    entropy = entropy.mean()
    total = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {
        "loss/total": total,
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "loss/entropy": entropy,
        "loss/approx_kl": jax.lax.stop_gradient(((ratio - 1.0) - log_ratio).mean()),
    }
    return total, metrics
