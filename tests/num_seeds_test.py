"""`--num-seeds N` trains N seeds in one vmapped jit; seed for seed it equals N single-seed runs.

Seed for seed means the whole run state (params, optimizer state, env states,
replay buffer, RNG key, counters), every logged training metric and the greedy
evaluation returns (during training and at the end). The runs are tiny: what is slow here is XLA compiling, so
the single-seed runs of one preset share a persistent compilation cache (their
programs are identical; the seed is an argument), see `compilation_cache_dir`.
"""

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from vibe.checkpoint import manager as checkpoints
from vibe.config import presets
from vibe.logging.metrics import read_metrics
from vibe.scripts import training
from vibe.train import runner

NUM_SEEDS, SEED = 4, 5
# A few updates each, learning included; small replay buffers keep the vmapped state small.
SHRINK = {
    "cartpole_ppo": ["--algo.num-envs", "2", "--algo.num-steps", "8", "--algo.total-timesteps", "64"],
    "cartpole_dqn": ["--algo.total-timesteps", "96", "--algo.learning-starts", "32", "--algo.batch-size", "8"],
    "pendulum_sac": ["--algo.total-timesteps", "32", "--algo.learning-starts", "16", "--algo.batch-size", "8"],
}
SHRINK["cartpole_dqn"] += ["--algo.buffer-size", "64"]
SHRINK["pendulum_sac"] += ["--algo.buffer-size", "64"]
COMMON = ["--eval-episodes", "2", "--wandb-mode", "disabled"]
CACHE_DIR = "xla_cache"  # under the module's temporary directory (see `compilation_cache_dir`)
# Logged per chunk, not per seed: wall-clock values and counters.
NOT_PER_SEED = {"step", "time", "sps", "update"}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache_dir(tmp_path_factory):
    """Single-seed runs of one preset compile the same programs (the seed reaches them as a PRNG key
    argument), so all but the first load their executables from a cache instead of spending seconds
    in XLA each. The vmapped run is a different program and always compiles; the cache is this
    module's own (the runs get it as --compilation-cache; under bazel the training command keeps it in
    the test's TEST_TMPDIR) and is switched off again afterwards. Returns its directory."""
    settings = ("jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")
    before = jax.config.jax_compilation_cache_dir, {name: getattr(jax.config, name) for name in settings}
    directory = str(tmp_path_factory.mktemp(CACHE_DIR))
    compilation_cache.set_cache_dir(directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    compilation_cache.reset_cache()  # takes effect even if this process compiled before
    yield directory
    compilation_cache.set_cache_dir(before[0])
    for name, value in before[1].items():  # the training command sets both too
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def assert_rows_match_seed(together: list[dict], alone: list[dict], seed: int) -> None:
    """Every metric row of the vmapped run holds, under `<key>/seeds`, seed `seed`'s value of `<key>`."""
    assert [r["step"] for r in together] == [r["step"] for r in alone]
    for row_t, row_a in zip(together, alone, strict=True):
        per_seed = {k.removesuffix("/seeds"): v[seed] for k, v in row_t.items() if k.endswith("/seeds")}
        assert per_seed, row_t
        assert set(row_a) - NOT_PER_SEED - {k for k in row_a if k.startswith("eval/")} <= per_seed.keys()
        for key, value in per_seed.items():
            if value is None:  # e.g. no episode finished for this seed in this chunk
                assert key not in row_a, (key, row_a)
            else:
                # vmap batches the matmuls, so XLA may sum in another order: equal up to float rounding.
                np.testing.assert_allclose(value, row_a[key], rtol=1e-4, atol=1e-5, err_msg=f"{key} at {row_a}")


@pytest.fixture
def no_checkpoints(monkeypatch):
    """Checkpoints are not what this module tests (resume_test.py is), and every save costs the writer process
    CPU next to the runs; the runs here save nothing, so they mark no best step either."""
    monkeypatch.setattr(checkpoints, "save", lambda manager, step, state, assets, **kwargs: None)
    monkeypatch.setattr(checkpoints.CheckpointManager, "mark_best", lambda self, step, metric_name, value: None)


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_vmapped_seeds_equal_single_seed_runs(name, tmp_path, no_checkpoints, compilation_cache_dir):
    common = [name, *SHRINK[name], *COMMON, "--output-dir", str(tmp_path), "--compilation-cache", compilation_cache_dir]
    together = training.train(presets.cli([*common, "--seed", str(SEED), "--num-seeds", str(NUM_SEEDS)]))
    assert together.eval_returns.shape == (NUM_SEEDS, 2)
    rows_together = read_metrics(f"{together.run_dir}/metrics.jsonl")
    assert rows_together[-1]["eval/return_mean/seeds"] == pytest.approx(together.eval_returns.mean(axis=1))
    # Evaluations during training too (about ten per run), each compared seed for seed below.
    assert sum("eval/return_mean/seeds" in row for row in rows_together) > 1
    seeds_differ = False
    for i in range(NUM_SEEDS):
        alone = training.train(presets.cli([*common, "--seed", str(SEED + i), "--exp-name", f"alone{i}"]))
        seed_i = jax.tree.map(lambda x, i=i: x[i], together.state)
        leaves_t, leaves_a = jax.tree.leaves_with_path(seed_i), jax.tree.leaves_with_path(alone.state)
        assert [p for p, _ in leaves_t] == [p for p, _ in leaves_a]
        for (path, a), (_, b) in zip(leaves_t, leaves_a, strict=True):
            a, b, where = np.asarray(a), np.asarray(b), f"seed {SEED + i}: {jax.tree_util.keystr(path)}"
            if np.issubdtype(a.dtype, np.floating):  # float rounding only (see above)
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=where)
            else:  # RNG keys, counters, buffer indices, flags: exactly
                np.testing.assert_array_equal(a, b, err_msg=where)
        np.testing.assert_allclose(together.eval_returns[i], alone.eval_returns, rtol=1e-4)
        assert_rows_match_seed(rows_together, read_metrics(f"{alone.run_dir}/metrics.jsonl"), i)
        if i:  # the seeds are really different runs, so matching each one means something
            seed_0 = jax.tree.map(lambda x: x[0], together.state)
            seeds_differ |= not all(map(np.allclose, jax.tree.leaves(seed_0.params), jax.tree.leaves(seed_i.params)))
    assert seeds_differ


def test_eval_summary_reports_the_iqm_over_seeds():
    returns = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [100.0, 100.0]])
    stats = runner.eval_summary(returns)
    assert stats["eval/return_iqm"] == 2.5  # the middle two of four seed means
    assert stats["eval/return_mean/seeds"] == [1.0, 2.0, 3.0, 100.0]
    assert stats["eval/return_mean"] == pytest.approx(26.5)
