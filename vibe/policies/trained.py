"""``create_trained_policy(run_dir)``: a ``Policy`` from a run directory alone.

    policy = create_trained_policy("checkpoints/cartpole_ppo/default")      # the best step, greedy
    policy.infer({"observation.state": obs})  # {"actions": 1, "policy_timing": {"infer_ms": 0.05}}

It reads the checkpoint's ``assets`` (algorithm, typed config, env id, spaces, observation statistics)
and its ``params``, never its ``train_state`` (for DQN and SAC: the whole replay buffer), rebuilds the
algorithm's static record (network, heads, bounds), and runs the chain: input transforms (the
observation-normalisation statistics the run trained with), the jitted greedy (or sampling) network,
output transforms (Box actions clipped to the bounds). Observations use the LeRobot feature names that
``record_dataset`` writes: ``observation.state`` for flat observations, ``observation.image`` for images.
"""

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.algorithms.algorithm import Algorithm
from vibe.algorithms.bc.bc import BC
from vibe.algorithms.bc.config import BCConfig
from vibe.algorithms.dqn.config import DQNConfig
from vibe.algorithms.dqn.dqn import DQN
from vibe.algorithms.iql.config import IQLConfig
from vibe.algorithms.iql.iql import IQL
from vibe.algorithms.ppo.config import PPOConfig
from vibe.algorithms.ppo.ppo import PPO
from vibe.algorithms.sac.config import SACConfig
from vibe.algorithms.sac.sac import SAC
from vibe.checkpoint import manager as checkpoints
from vibe.core import serialize
from vibe.envs import normalize, registry, spaces
from vibe.envs.config import WrapperConfig
from vibe.policies.policy import array_spec

# What the assets' "algorithm" names: its config type and its static record. Explicit, not import-by-string.
ALGORITHMS: dict[str, tuple[type, Any]] = {
    "ppo": (PPOConfig, PPO),
    "dqn": (DQNConfig, DQN),
    "sac": (SACConfig, SAC),
    # Offline algorithms are rebuilt without their dataset: the normalisation they trained with is in their params.
    "bc": (BCConfig, BC),
    "iql": (IQLConfig, IQL),
}
REQUIRED_ASSETS = ("algorithm", "config", "env", "observation_space", "action_space", "obs_stats")


def observation_key(space: spaces.Space) -> str:
    """The LeRobot feature name of an observation: ``observation.image`` for ``[h, w, c]``, else ``.state``."""
    return "observation.image" if len(space.shape) == 3 else "observation.state"


def algorithm_from_assets(assets: dict[str, Any], *, where: str) -> Algorithm:
    """The static record that wrote a checkpoint, rebuilt from its assets (config, env id)."""
    name = assets["algorithm"]
    if name not in ALGORITHMS:
        raise ValueError(f"{where}: algorithm {name!r} has no policy builder; known: {sorted(ALGORITHMS)}")
    config_type, record = ALGORITHMS[name]
    config = serialize.from_json(config_type, assets["config"]["algo"], where=f"{where}: config.algo")
    # The run's observation wrappers (crop, resize, grayscale, invert, frame stack), when its config stored them.
    wrappers = serialize.from_json(
        WrapperConfig, assets["config"].get("wrappers", {}), where=f"{where}: config.wrappers"
    )
    env, env_params = registry.make(assets["env"], wrappers)
    return record.make(config, env, env_params, env_id=assets["env"])


def _stats(data: Any, seed_index: int, num_seeds: int) -> normalize.RunningMeanStd | None:
    if data is None:
        return None
    arrays = {k: np.asarray(v, np.float32) for k, v in data.items()}
    if num_seeds > 1:
        arrays = {k: v[seed_index] for k, v in arrays.items()}
    return normalize.RunningMeanStd(**{k: jnp.asarray(v) for k, v in arrays.items()})


@dataclasses.dataclass
class TrainedPolicy:
    """A trained algorithm's policy (see the module docstring). Not thread-safe for sampling keys."""

    algorithm: Algorithm
    params: Any
    obs_stats: normalize.RunningMeanStd | None
    greedy: bool
    key: jax.Array  # advanced on every sampling call
    info: dict[str, Any]  # run_dir, step, env, wrappers (the run's WrapperConfig as JSON: evaluators rebuild the env)

    def __post_init__(self) -> None:
        algorithm = self.algorithm
        self._obs_space = algorithm.env.observation_space(algorithm.env_params)
        self._action_space = algorithm.env.action_space(algorithm.env_params)
        self._obs_key = observation_key(self._obs_space)

        def act(params: Any, stats: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
            obs = obs.astype(self._obs_space.dtype)
            return algorithm.act(params, algorithm.policy_input(stats, obs), key, greedy=self.greedy)

        self._act = jax.jit(act)

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "observation": {self._obs_key: array_spec(self._obs_space.shape, self._obs_space.dtype)},
            "action": array_spec(self._action_space.shape, self._action_space.dtype),
            "action_space": spaces.space_to_json(self._action_space),
            "algorithm": self.algorithm.name,
            **self.info,
        }

    def reset(self) -> None:
        """Stateless: nothing to forget between episodes."""

    def infer_batch(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self._obs_key not in obs:
            raise KeyError(f"observation lacks {self._obs_key!r} (has {sorted(obs)}); see the policy's metadata")
        self.key, key = jax.random.split(self.key)
        start = time.perf_counter()
        actions = np.asarray(jax.block_until_ready(self._act(self.params, self.obs_stats, obs[self._obs_key], key)))
        return {"actions": actions, "policy_timing": {"infer_ms": (time.perf_counter() - start) * 1e3}}

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        batched = {k: np.asarray(v)[None] for k, v in obs.items()}
        out = self.infer_batch(batched)
        return {"actions": out["actions"][0], "policy_timing": out["policy_timing"]}


def create_trained_policy(
    run_dir: str, *, step: int | str = "best", greedy: bool = True, seed: int = 0, seed_index: int = 0
) -> TrainedPolicy:
    """The policy of checkpoint ``step`` ("best", "latest" or a number) in ``run_dir``.

    ``step="best"`` falls back to the latest checkpoint when the run marked none best (evaluation off).
    ``seed_index`` picks one of the seeds of a ``--num-seeds`` run; ``seed`` seeds the sampling key of a
    non-greedy policy. A directory without a usable checkpoint raises FileNotFoundError or ValueError with
    one line that names it.
    """
    if step == "best" and checkpoints.best_step(run_dir) is None:
        step = "latest"
    where = f"{run_dir} (step {step})"
    assets = checkpoints.read_assets(run_dir, step, required=REQUIRED_ASSETS)
    algorithm = algorithm_from_assets(assets, where=where)
    num_seeds = len(assets.get("seeds", [0]))
    if not 0 <= seed_index < num_seeds:
        raise ValueError(f"seed_index={seed_index} but {run_dir} trained {num_seeds} seed(s)")
    abstract = jax.eval_shape(algorithm.init, jax.random.PRNGKey(0)).params
    if num_seeds > 1:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_seeds, *x.shape), x.dtype), abstract)
    number, params, assets = checkpoints.restore_params(run_dir, step, abstract)
    if num_seeds > 1:
        params = jax.tree.map(lambda x: x[seed_index], params)
    info = {"run_dir": run_dir, "step": number, "env": assets["env"], "wrappers": assets["config"].get("wrappers", {})}
    obs_stats = _stats(assets["obs_stats"], seed_index, num_seeds)
    return TrainedPolicy(algorithm, params, obs_stats, greedy, jax.random.PRNGKey(seed), info)
