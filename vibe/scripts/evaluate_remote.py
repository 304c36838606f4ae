"""Evaluate a served policy as a robot would: step the env here, ask the server for each action.

    tools/bazelw run //vibe/serving:server -- --policy.dir checkpoints/cartpole_ppo/default   # one terminal
    tools/bazelw run //vibe/scripts:evaluate_remote -- --episodes 10                           # another

prints one line such as::

    CartPole-v1 through ws://127.0.0.1:8000 (ppo, step 122): mean return 500.0 over 10 episodes of 5000 steps
    in all (min 500.0, max 500.0; round trip p50 0.45 ms); returns [500.0, 500.0, ...]

and, with ``--out FILE``, the same as JSON (``returns``, ``lengths``, ``mean_return``, ...). The env is the
one the server's metadata names (``env``, which ``create_trained_policy`` sets), under the observation
wrappers it names (``wrappers``: crop, resize, grayscale, invert, frame stack, as the run trained); ``--env``
overrides the id.
The env steps on this host through jitted ``reset``/``step`` and sends one observation per ``infer`` call
(``WebsocketClientPolicy``, openpi-client's protocol), episodes one after another; a fixed ``--seed`` gives
the same episodes every time, so two servers of one checkpoint give the same returns.
"""

import dataclasses
import json
import os
import sys
import time
from typing import Any, Protocol

import jax
import numpy as np
import tyro

from vibe.core import serialize
from vibe.core.usage import bazel_prog
from vibe.envs import registry
from vibe.envs.config import WrapperConfig
from vibe.envs.env import Env


@dataclasses.dataclass(frozen=True)
class Args:
    host: str = "127.0.0.1"  # the policy server's host
    port: int = 8000  # the policy server's port
    episodes: int = 10  # episodes to run, one after another
    env: str = ""  # env id to step (default: the "env" in the server's metadata)
    seed: int = 0  # seed of the episodes' resets and env steps (the same seed gives the same episodes)
    api_key: str | None = None  # sent as "Authorization: Api-Key <key>" (default $VIBE_API_KEY)
    max_steps: int = 100_000  # longest episode; one that runs past it ends there (a guard for envs without a limit)
    connect_timeout_s: float = 60.0  # how long to wait for the server to come up
    out: str = ""  # JSON file for the results (relative to where the command runs); empty: print only


class InferPolicy(Protocol):
    """What the loop needs of a policy: openpi-client's ``infer`` (a ``Policy`` or a websocket client)."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]: ...

    def reset(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Episodes:
    """Results of ``run_episodes``."""

    returns: list[float]  # undiscounted return of each episode
    lengths: list[int]  # env steps of each episode
    actions: list[np.ndarray]  # each episode's actions, stacked [length, *action_shape]
    infer_ms: list[float]  # wall time of every infer call (a round trip for a remote policy), in order
    seconds: float  # wall time of all episodes (env steps and inference, first-call compiles included)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))


def observation_key(metadata: dict[str, Any]) -> str:
    """The one observation key the policy takes (its metadata's ``observation``); ValueError otherwise."""
    keys = sorted(metadata.get("observation") or {})
    if len(keys) != 1:
        raise ValueError(f"the policy takes observation keys {keys}; evaluate_remote feeds an env with one key")
    return keys[0]


def check_env(env: Env, env_params: Any, env_id: str, metadata: dict[str, Any]) -> None:
    """ValueError (one line) unless ``env``'s observations have the shape and dtype the policy takes."""
    key = observation_key(metadata)
    spec = metadata["observation"][key]
    space = env.observation_space(env_params)
    want = (tuple(int(d) for d in spec["shape"]), np.dtype(spec["dtype"]))
    have = (tuple(space.shape), np.dtype(space.dtype))
    if have != want:
        raise ValueError(
            f"env {env_id} observes {have[1].name}{list(have[0])} but the policy takes {key} as "
            f"{want[1].name}{list(want[0])}; pass the env it was trained on with --env"
        )


def run_episodes(
    policy: InferPolicy,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    obs_key: str,
    max_steps: int = 100_000,
    wrappers: WrapperConfig | None = None,
) -> Episodes:
    """``episodes`` episodes of ``env_id`` (under ``wrappers``), one after another, one ``policy.infer`` per step.

    Episode ``i`` starts from ``jax.random.split(PRNGKey(seed), episodes)[i]``; each env step splits its
    key from the episode's, so the episodes depend on ``seed`` and the policy's actions alone. An episode
    ends at its first ``terminated | truncated`` (or after ``max_steps``).
    """
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    env, env_params = registry.make(env_id, wrappers)

    @jax.jit
    def reset(key: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
        key, reset_key = jax.random.split(key)
        state, timestep = env.reset(reset_key, env_params)
        return state, timestep.obs, key

    @jax.jit
    def step(state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        key, step_key = jax.random.split(key)
        state, timestep = env.step(step_key, state, action, env_params)
        return state, timestep.obs, timestep.reward, timestep.terminated | timestep.truncated, key

    returns: list[float] = []
    lengths: list[int] = []
    actions: list[np.ndarray] = []
    infer_ms: list[float] = []
    start = time.perf_counter()
    for key in jax.random.split(jax.random.PRNGKey(seed), episodes):
        policy.reset()
        state, obs, key = reset(key)
        total, done = 0.0, False
        taken: list[np.ndarray] = []
        while not done and len(taken) < max_steps:
            t0 = time.perf_counter()
            action = np.asarray(policy.infer({obs_key: np.asarray(obs)})["actions"])
            infer_ms.append((time.perf_counter() - t0) * 1e3)
            state, obs, reward, done_array, key = step(state, action, key)
            reward, done = jax.device_get((reward, done_array))
            total += float(reward)
            taken.append(action)
        returns.append(total)
        lengths.append(len(taken))
        actions.append(np.stack(taken))
    return Episodes(returns, lengths, actions, infer_ms, time.perf_counter() - start)


def summary(env_id: str, where: str, metadata: dict[str, Any], result: Episodes) -> str:
    """The one-line report."""
    steps = sum(result.lengths)
    source = ", ".join(
        f"{k} {metadata[k]}" if k == "step" else str(metadata[k]) for k in ("algorithm", "step") if k in metadata
    )
    returns = ", ".join(f"{r:.1f}" for r in result.returns)
    return (
        f"{env_id} through {where}{f' ({source})' if source else ''}: mean return {result.mean_return:.1f} over "
        f"{len(result.returns)} episodes of {steps} steps in all (min {min(result.returns):.1f}, max "
        f"{max(result.returns):.1f}; round trip p50 {np.percentile(result.infer_ms, 50):.2f} ms); returns [{returns}]"
    )


def main(args: Args) -> Episodes:
    # The websocket client is imported here: --help and a bad flag need neither it nor a server.
    from vibe.serving.client import WebsocketClientPolicy

    if args.episodes < 1:
        print(f"error: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
        raise SystemExit(2)
    where = f"ws://{args.host}:{args.port}"
    api_key = args.api_key if args.api_key is not None else os.environ.get("VIBE_API_KEY") or None
    try:
        client = WebsocketClientPolicy(args.host, args.port, api_key, connect_timeout_s=args.connect_timeout_s)
    except (ConnectionError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    with client:
        metadata = client.get_server_metadata()
        env_id = args.env or metadata.get("env")
        try:
            if not env_id:
                raise ValueError(f"the policy at {where} names no env in its metadata; pass --env")
            wrappers = serialize.from_json(
                WrapperConfig, metadata.get("wrappers") or {}, where="policy metadata: wrappers"
            )
            env, env_params = registry.make(env_id, wrappers)
            check_env(env, env_params, env_id, metadata)
            key = observation_key(metadata)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from e
        result = run_episodes(
            client,
            env_id,
            episodes=args.episodes,
            seed=args.seed,
            obs_key=key,
            max_steps=args.max_steps,
            wrappers=wrappers,
        )
    print(summary(env_id, where, metadata, result), flush=True)
    if args.out:
        payload = {
            "env": env_id,
            "server": where,
            "policy": {k: metadata[k] for k in ("algorithm", "step", "run_dir") if k in metadata},
            "seed": args.seed,
            "episodes": args.episodes,
            "mean_return": result.mean_return,
            "returns": result.returns,
            "lengths": result.lengths,
            "seconds": result.seconds,
            "infer_p50_ms": float(np.percentile(result.infer_ms, 50)),
            "infer_p99_ms": float(np.percentile(result.infer_ms, 99)),
        }
        path = os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), args.out)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(payload, f, indent=2)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args, prog=bazel_prog()))
