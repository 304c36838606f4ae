"""`--num-seeds N` trains N seeds in one vmapped jit; seed for seed it equals N single-seed runs."""

import jax
import numpy as np
import pytest

from vibe.config import presets
from vibe.scripts import training
from vibe.train import runner

SHRINK = {
    "cartpole_ppo": ["--algo.num-envs", "2", "--algo.num-steps", "8", "--algo.total-timesteps", "64"],
    "cartpole_dqn": ["--algo.total-timesteps", "96", "--algo.learning-starts", "32", "--algo.batch-size", "8"],
    "pendulum_sac": ["--algo.total-timesteps", "32", "--algo.learning-starts", "16", "--algo.batch-size", "8"],
}


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_vmapped_seeds_equal_single_seed_runs(name, tmp_path):
    common = [*SHRINK[name], "--output-dir", str(tmp_path), "--eval-episodes", "2", "--seed", "5"]
    common += ["--wandb-mode", "disabled"]
    config = presets.cli([name, *common, "--num-seeds", "3", "--exp-name", "together"])
    together = training.train(config)
    assert together.eval_returns.shape == (3, 2)
    for i in range(3):
        alone = training.train(presets.cli([name, *common, "--seed", str(5 + i), "--exp-name", f"alone{i}"]))
        seed_i = jax.tree.map(lambda x, i=i: x[i], together.state)
        for a, b in zip(jax.tree.leaves(seed_i.params), jax.tree.leaves(alone.state.params), strict=True):
            # vmap batches the matmuls, so XLA may sum in another order: equal up to float rounding.
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(together.eval_returns[i], alone.eval_returns, rtol=1e-4)


def test_eval_summary_reports_the_iqm_over_seeds():
    returns = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [100.0, 100.0]])
    stats = runner.eval_summary(returns)
    assert stats["eval/return_iqm"] == 2.5  # the middle two of four seed means
    assert stats["eval/return_mean/seeds"] == [1.0, 2.0, 3.0, 100.0]
    assert stats["eval/return_mean"] == pytest.approx(26.5)
