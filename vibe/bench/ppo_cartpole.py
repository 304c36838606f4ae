"""Benchmark P1: PPO on CartPole-v1 with PureJaxRL's hyper-parameters.

    tools/bazelw run //vibe/bench:ppo_cartpole                       # 10 seeds, ~2 minutes on 2 cores
    tools/bazelw run //vibe/bench:ppo_cartpole -- --seeds 3 --out /tmp/p1.json

4 envs × 128 steps, 4 epochs × 4 minibatches, lr 2.5e-4 annealed, 500k env
steps per seed. Prints compile seconds, env steps/s after compile (timed
without the periodic evaluations), training seconds until the greedy return
(32 episodes, no auto-reset) first reaches 475, the final greedy return (IQM
over seeds), and the ratio of training speed to the env-only limit: the same 4
envs stepped with random actions inside one jit. Medians over seeds.
PureJaxRL on a 2-core x86 CPU: 21 s compile, 89k steps/s.
"""

import dataclasses
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import tyro

from vibe.algorithms.ppo.agent import PPO
from vibe.algorithms.ppo.config import PPOConfig
from vibe.bench import report
from vibe.envs import gymnax_env, spaces
from vibe.envs.evaluate import evaluate
from vibe.envs.wrappers import AutoReset
from vibe.train.loop import make_train_chunk
from vibe.train.runner import user_path


ENV = "CartPole-v1"


@dataclasses.dataclass(frozen=True)
class Args:
    seeds: int = 10  # independent runs (seeds 0..seeds-1)
    eval_every: int = 16  # updates between greedy evaluations (resolution of the time to threshold)
    threshold: float = 475.0  # greedy return that counts as solved
    out: str = "bench_results/ppo_cartpole.json"  # JSON output, relative to where the command is run


def env_only_steps_per_second(config: PPOConfig) -> float:
    """Steps/s of the same vectorised envs with random actions in one jit: the ceiling for training."""
    plain_env, params = gymnax_env.make(ENV)
    env = AutoReset(plain_env)
    action_space = env.action_space(params)
    assert isinstance(action_space, spaces.Discrete), "PPO here has discrete actions"
    num_actions = action_space.n
    steps = config.num_updates * config.num_steps

    def run(key: jax.Array) -> jax.Array:
        reset_keys = jax.random.split(key, config.num_envs)
        state, _ = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)

        def body(carry: Any, key: jax.Array) -> tuple[Any, None]:
            state, total = carry
            action_key, step_key = jax.random.split(key)
            action = jax.random.randint(action_key, (config.num_envs,), 0, num_actions)
            state, timestep = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, config.num_envs), state, action, params
            )
            return (state, total + timestep.reward.sum()), None

        (_, total), _ = jax.lax.scan(body, (state, jnp.float32(0)), jax.random.split(key, steps))
        return total

    compiled = jax.jit(run).lower(jax.random.PRNGKey(0)).compile()
    jax.block_until_ready(compiled(jax.random.PRNGKey(0)))
    start = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.PRNGKey(1)))
    return steps * config.num_envs / (time.perf_counter() - start)


def run_seed(algo: PPO, seed: int, args: Args, compiled: Any, eval_fn: Any) -> dict[str, Any]:
    state = algo.init(jax.random.PRNGKey(seed))
    eval_key = jax.random.PRNGKey(10_000 + seed)
    train_seconds, update, solved_at = 0.0, 0, None
    greedy = float("nan")
    while update < algo.num_updates:
        k = min(args.eval_every, algo.num_updates - update)
        start = time.perf_counter()
        state, totals = compiled(state, jnp.int32(k))
        jax.block_until_ready(totals)
        train_seconds += time.perf_counter() - start
        update += k
        greedy = float(eval_fn(state, eval_key).mean())
        if solved_at is None and greedy >= args.threshold:
            solved_at = train_seconds
    steps = algo.num_updates * algo.steps_per_update
    return {
        "seed": seed,
        "train_seconds": train_seconds,
        "steps_per_second": steps / train_seconds,
        "seconds_to_threshold": solved_at,
        "final_greedy_return": greedy,
    }


def main(args: Args) -> None:
    config = PPOConfig()  # PureJaxRL's CartPole hyper-parameters are the defaults
    env, env_params = gymnax_env.make(ENV)
    algo = PPO(config, env, env_params)

    start = time.perf_counter()
    state = algo.init(jax.random.PRNGKey(0))
    compiled = make_train_chunk(algo.train_step).lower(state, jnp.int32(args.eval_every)).compile()
    compile_seconds = time.perf_counter() - start

    eval_fn = jax.jit(lambda state, key: evaluate(env, env_params, algo.greedy_policy(state), key, num_episodes=32))
    runs = [run_seed(algo, seed, args, compiled, eval_fn) for seed in range(args.seeds)]
    env_limit = env_only_steps_per_second(config)

    sps = statistics.median(r["steps_per_second"] for r in runs)
    solved = [r["seconds_to_threshold"] for r in runs if r["seconds_to_threshold"] is not None]
    summary = {
        "compile_seconds": compile_seconds,
        "steps_per_second_median": sps,
        "seconds_to_threshold_median": statistics.median(solved) if solved else None,
        "seeds_solved": len(solved),
        "final_greedy_return_iqm": report.iqm([r["final_greedy_return"] for r in runs]),
        "env_only_steps_per_second": env_limit,
        "fraction_of_env_limit": sps / env_limit,
    }
    report.print_table(
        [
            ("compile (s)", f"{compile_seconds:.1f}"),
            ("steps/s after compile (median)", f"{sps:,.0f}"),
            ("vs PureJaxRL 89k/s", f"{sps / 89_000:.2f}x"),
            (
                f"train s to greedy >= {args.threshold:g} (median)",
                f"{summary['seconds_to_threshold_median']:.1f}" if solved else "never",
            ),
            ("seeds solved", f"{len(solved)}/{len(runs)}"),
            ("final greedy return (IQM)", f"{summary['final_greedy_return_iqm']:.1f}"),
            ("env-only steps/s (random actions)", f"{env_limit:,.0f}"),
            ("training / env-only", f"{summary['fraction_of_env_limit']:.2f}"),
        ],
        title=f"P1 PPO CartPole-v1, {args.seeds} seeds × {algo.num_updates * algo.steps_per_update:,} steps",
    )
    report.write_json(
        user_path(args.out), {"protocol": "P1", "args": dataclasses.asdict(args), **summary, "runs": runs}
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
