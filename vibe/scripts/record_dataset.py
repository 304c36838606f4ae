"""Records episodes of a trained (or random) policy into a LeRobot v3 dataset.

    tools/bazelw run //vibe/scripts:record_dataset -- --run-dir checkpoints/cartpole_ppo/default \\
        --episodes 50 --out datasets/cartpole_expert
    tools/bazelw run //vibe/scripts:record_dataset -- --policy random --env Pendulum-v1 --episodes 20 \\
        --out datasets/pendulum_random
    tools/bazelw run //vibe/scripts:record_dataset -- --merge datasets/pendulum_sac datasets/pendulum_random \
        --out datasets/pendulum_mixed          # episodes of both, in order (same env and spaces)
    tools/bazelw run //vibe/scripts:train -- cartpole_bc --data.dataset datasets/cartpole_expert

A progress bar per episode, then ``wrote 50 episodes (25,000 frames, mean return 500.0) to datasets/...``.
The trained policy acts greedily unless ``--epsilon`` (discrete: a uniformly random action with that
probability) or ``--noise`` (continuous: Gaussian noise of that std, in env units, clipped to the bounds).
Frames hold ``observation.state`` (or ``observation.image``), ``action``, ``next.reward``, ``next.done``
(terminated), ``next.truncated`` (time limit) and the task; ``meta/vibe.json`` names the env and its spaces,
so ``train cartpole_bc`` evaluates in the right env. An existing ``--out`` is refused (one line, nothing
written) unless ``--overwrite``.
"""

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from vibe.core.usage import bazel_prog
from vibe.data.lerobot_reader import LeRobotReader, resolve_root
from vibe.data.lerobot_writer import VIBE_METADATA, read_vibe_metadata
from vibe.data.record import record_episodes
from vibe.envs import registry, spaces
from vibe.policies.trained import create_trained_policy

DEFAULT_FPS = 50


@dataclasses.dataclass(frozen=True)
class Args:
    out: str  # dataset folder to create, relative to where the command runs
    episodes: int = 50  # episodes to record
    policy: Literal["trained", "random"] = "trained"  # the run's policy (--run-dir), or uniform random actions
    run_dir: str = ""  # run directory of a trained policy (holds its checkpoints); for --policy trained
    step: str = "best"  # checkpoint: best, latest or an update number
    env: str = ""  # env id; required for --policy random, default the run's env
    epsilon: float = 0.0  # discrete actions: probability of a uniformly random action instead of the policy's
    noise: float = 0.0  # continuous actions: std of Gaussian noise added to the policy's action (env units)
    seed: int = 0  # seeds resets, exploration and random actions
    fps: int = DEFAULT_FPS  # LeRobot frame rate (timestamps are frame / fps)
    video: bool = False  # image observations as MP4 video instead of PNG frames
    task: str = ""  # LeRobot task text of every episode (default "<policy> policy in <env>")
    # Instead of recording: concatenate these datasets (recorded in the same env) into --out, in order.
    merge: tuple[str, ...] = ()
    overwrite: bool = False  # replace an existing --out
    progress: bool = True  # show a progress bar


def user_path(path: str) -> str:
    """``path`` relative to where the user ran ``bazel run`` (``BUILD_WORKING_DIRECTORY``), as runner.user_path."""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)


def policy_fn(args: Args) -> tuple[Any, Any, Any, str, dict[str, Any]]:
    """``(env, env_params, (obs, key) -> action, env_id, metadata)`` for ``args``; ValueError names the flag."""
    if args.policy == "random":
        if not args.env:
            raise ValueError("--policy random needs --env ID (e.g. --env Pendulum-v1)")
        env, env_params = registry.make(args.env)
        space = env.action_space(env_params)
        return env, env_params, lambda obs, key: space.sample(key), args.env, {"policy": "random"}
    if not args.run_dir:
        raise ValueError("--policy trained needs --run-dir RUN (e.g. checkpoints/cartpole_ppo/default)")
    step: int | str = int(args.step) if args.step.isdigit() else args.step
    trained = create_trained_policy(user_path(args.run_dir), step=step, greedy=True)
    algorithm = trained.algorithm
    env_id = trained.info["env"]
    if args.env and args.env != env_id:
        raise ValueError(f"--env {args.env} but the run in {args.run_dir} trained on {env_id}; leave --env out")
    env, env_params = algorithm.env, algorithm.env_params
    space = env.action_space(env_params)
    discrete = isinstance(space, spaces.Discrete)
    if args.epsilon and not discrete:
        raise ValueError(f"--epsilon is for discrete actions; {env_id} acts in {space!r}: use --noise")
    if args.noise and discrete:
        raise ValueError(f"--noise is for continuous actions; {env_id} acts in {space!r}: use --epsilon")
    params, stats = trained.params, trained.obs_stats

    def act(obs: jax.Array, key: jax.Array) -> jax.Array:
        greedy_key, explore_key, random_key = jax.random.split(key, 3)
        action = algorithm.act(params, algorithm.policy_input(stats, obs[None]), greedy_key, greedy=True)[0]
        if discrete and args.epsilon:
            explore = jax.random.uniform(explore_key) < args.epsilon
            return jnp.where(explore, space.sample(random_key), action)
        if args.noise and isinstance(space, spaces.Box):
            noisy = action + args.noise * jax.random.normal(explore_key, action.shape)
            return jnp.clip(noisy, space.low, space.high).astype(action.dtype)
        return action

    metadata = {"policy": "trained", "run_dir": trained.info["run_dir"], "step": trained.info["step"]}
    return env, env_params, act, env_id, {**metadata, "epsilon": args.epsilon, "noise": args.noise}


def record(args: Args) -> Path:
    """Records the dataset of ``args`` (see the module docstring) and returns its folder."""
    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: record at least one episode")
    out = Path(user_path(args.out))
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"dataset dir {out} already exists; pass --overwrite to replace it, or another --out")
    if args.merge:
        return merge(args, out)
    env, env_params, act, env_id, metadata = policy_fn(args)
    return record_episodes(
        env,
        env_params,
        act,
        episodes=args.episodes,
        out=out,
        fps=args.fps,
        key=jax.random.PRNGKey(args.seed),
        overwrite=args.overwrite,
        video=args.video,
        metadata={"env": env_id, **metadata},
        progress=args.progress,
        task=args.task or f"{args.policy} policy in {env_id}",
    )


def merge(args: Args, out: Path) -> Path:
    """``args.merge``'s datasets as one (lerobot's ``aggregate_datasets``), with the first one's vibe metadata
    plus ``merged_from``; refuses datasets of different envs or spaces. Staged beside ``out``, then moved."""
    from lerobot.datasets.aggregate import aggregate_datasets

    roots = [resolve_root(user_path(path)) for path in args.merge]
    metadata = [read_vibe_metadata(root) or {} for root in roots]
    for field in ("env", "observation_space", "action_space"):
        for root, meta in zip(roots[1:], metadata[1:], strict=True):
            if meta.get(field) != metadata[0].get(field):
                raise ValueError(
                    f"--merge: {root} has {field} {meta.get(field)!r} but {roots[0]} has {metadata[0].get(field)!r}; "
                    "merge datasets of one env"
                )
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        aggregate_datasets(
            [f"local/{root.name}" for root in roots], f"local/{out.name}", roots=list(roots), aggr_root=staging
        )
        merged = {**metadata[0], "merged_from": [str(root) for root in roots]}
        (staging / VIBE_METADATA).write_text(json.dumps(merged, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def summary(root: Path) -> str:
    reader = LeRobotReader(root, keys=["next.reward", "episode_index"])
    batch = reader.get_batch(np.arange(len(reader)))
    episodes = np.unique(batch["episode_index"])
    returns = [batch["next.reward"][batch["episode_index"] == e].sum() for e in episodes]
    count = f"{len(episodes)} episode{'' if len(episodes) == 1 else 's'}"
    return f"wrote {count} ({len(reader):,} frames, mean return {np.mean(returns):.1f}) to {root}"


def main(argv: list[str] | None = None) -> Path:
    args = tyro.cli(Args, args=argv, prog=bazel_prog())
    try:
        root = record(args)
    except (ValueError, FileExistsError, FileNotFoundError) as e:  # DatasetError is a ValueError
        print(f"record_dataset: error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    print(summary(root))
    return root


if __name__ == "__main__":
    main(sys.argv[1:])
