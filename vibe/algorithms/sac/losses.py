"""SAC's math: the soft TD target and the critic, actor and temperature losses.

Pure functions of arrays (no networks, no optimizers), so tests check them
against hand-computed numbers. Equations are from Haarnoja et al. 2018b,
"Soft Actor-Critic Algorithms and Applications" (arXiv:1812.05905).
"""

import jax
import jax.numpy as jnp

from vibe.core import typing as at


def td_target(
    reward: at.Float[at.Array, " b"],
    terminated: at.Bool[at.Array, " b"],
    next_q: at.Float[at.Array, "2 b"],
    next_log_prob: at.Float[at.Array, " b"],
    alpha: at.Float[at.Array, ""],
    gamma: float,
) -> at.Float[at.Array, " b"]:
    """The soft Bellman target (eqs. 3 and 5) with clipped double Q (Fujimoto et al. 2018):

        y = r + gamma * (1 - terminated) * (min_j Q_target_j(s', a') - alpha * log pi(a'|s')),  a' ~ pi(.|s')

    Only ``terminated`` stops the bootstrap: a transition cut by a time limit
    (truncated) still has a future, and ``s'`` is then its true final
    observation, not the next episode's first.

    Args:
        next_q: both target critics at ``(s', a')``, ``[2, b]``.
        next_log_prob: ``log pi(a'|s')`` of the action the target was taken at.
    """
    next_v = jnp.min(next_q, axis=0) - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_v


def critic_loss(q: at.Float[at.Array, "2 b"], target: at.Float[at.Array, " b"]) -> at.Float[at.Array, ""]:
    """Sum over the twin critics of the mean squared soft TD error (eq. 5, with the usual 1/2 dropped)."""
    return jnp.square(q - jax.lax.stop_gradient(target)).mean(axis=1).sum()


def actor_loss(
    q: at.Float[at.Array, "2 b"], log_prob: at.Float[at.Array, " b"], alpha: at.Float[at.Array, ""]
) -> at.Float[at.Array, ""]:
    """KL projection onto the soft Q (eq. 7, reparameterised): ``mean(alpha * log pi(a|s) - min_j Q_j(s, a))``."""
    return (alpha * log_prob - jnp.min(q, axis=0)).mean()


def alpha_loss(
    log_alpha: at.Float[at.Array, ""], log_prob: at.Float[at.Array, " b"], target_entropy: float
) -> at.Float[at.Array, ""]:
    """Temperature objective (eq. 18) in log space, as SB3 does: ``-log_alpha * mean(log pi + target_entropy)``.

    Its gradient pushes alpha up while the policy's entropy ``-log pi`` is below
    ``target_entropy`` and down while above.
    """
    return -log_alpha * jax.lax.stop_gradient(log_prob + target_entropy).mean()
