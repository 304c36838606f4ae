"""P7: PPO on pixels (CNN on Breakout-MinAtar, CNN on PixelCartPole-v1), with the PureJaxRL comparison row.

    tools/bazelw run //vibe/bench:ppo_minatar                     # breakout_minatar_ppo, 5M env steps
    tools/bazelw run //vibe/bench:ppo_pixel_cartpole              # pixel_cartpole_ppo, its own run length
    tools/bazelw run //vibe/bench:ppo_minatar -- --steps 1000000 --out /tmp/p7.json

One seed trains the preset (its learning-rate schedule over `--steps` env steps, the preset's run
length by default); every `--eval-every` env steps the greedy policy plays 32 episodes (no
auto-reset) and the training clock (which excludes evaluation) is read when the return first
reaches each threshold. Reported: compile seconds, env steps/s after compile, the greedy and
training returns at 1M and 5M env steps (those the run reaches), seconds to each threshold.

Then the comparison row: vibe with PureJaxRL's MinAtar settings (relu MLP 64 on the flattened
image, 64 envs x 128 steps, 4 epochs x 8 minibatches, lr 5e-3 annealed) on Breakout-MinAtar, as
steps/s after compile divided by vibe's P1 (PPO CartPole, PureJaxRL's settings: `ppo_cartpole`)
measured in the same process: the anchor (shared/reference/anchors.md) has PureJaxRL itself at
0.42 of vibe's P1. Each is timed `--repeats` times over `--comparison-steps`, taking turns (on
MinAtar with the preset too), and the medians of the per-turn ratios are reported: this machine's
speed drifts by up to 25 % within minutes. Figures from different machines differ up to 3x; the
ratio does not.
"""

import dataclasses
import time
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from vibe.algorithms.ppo.config import PPOConfig
from vibe.bench import report
from vibe.config import presets
from vibe.config.train_config import TrainConfig
from vibe.networks.config import EncoderConfig
from vibe.scripts import training
from vibe.train.loop import make_train_chunk
from vibe.train.runner import user_path

# protocol -> (preset, greedy-return thresholds, default run length (0: the preset's))
PROTOCOLS = {
    "minatar": ("breakout_minatar_ppo", (20.0, 40.0), 5_000_000),
    "pixel_cartpole": ("pixel_cartpole_ppo", (400.0, 475.0), 0),
}
MARKS = (1_000_000, 5_000_000)  # env steps at which the returns are reported
# PureJaxRL's MinAtar PPO (purejaxrl/ppo_minatar.py): relu MLP 64 on the flattened image.
PUREJAXRL_MINATAR = PPOConfig(
    num_envs=64,
    num_steps=128,
    total_timesteps=1_048_576,
    update_epochs=4,
    num_minibatches=8,
    lr=5e-3,
    encoder=EncoderConfig(kind="mlp", hidden_sizes=(64,), activation="relu"),
)
PUREJAXRL_RATIO = 0.42  # PureJaxRL MinAtar steps/s / vibe P1 steps/s, measured side by side (anchors.md)


@dataclasses.dataclass(frozen=True)
class Args:
    protocol: Literal["minatar", "pixel_cartpole"] = "minatar"  # which P7 env
    steps: int = 0  # env steps of the run (0: the protocol's default); the lr schedule spans them
    eval_every: int = 0  # env steps between greedy evaluations (0: about 20 per run)
    seed: int = 0  # the training seed
    comparison_steps: int = 262_144  # env steps timed for the preset, the comparison row and P1 (0: skip)
    repeats: int = 5  # timed runs of the comparison row and of P1, taking turns; medians are reported
    out: str = ""  # JSON output (default bench_results/P7_<protocol>.json), relative to where the command runs

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1 (timed turns of each comparison run), got {self.repeats}")


def train_and_time(config: TrainConfig, seed: int, eval_every_updates: int, thresholds: tuple[float, ...]) -> dict:
    """Trains `config` for its run in chunks of `eval_every_updates`, evaluating after each."""
    algorithm = training.make_algorithm(config)
    init = jax.jit(algorithm.init)
    key = jax.random.PRNGKey(seed)
    start = time.perf_counter()
    compiled = make_train_chunk(algorithm.train_step).lower(init(key), jnp.int32(eval_every_updates)).compile()
    compile_seconds = time.perf_counter() - start
    evaluate = jax.jit(lambda state, key: algorithm.evaluate(state, key, 32)) if thresholds else None
    state = init(key)
    train_seconds, update, curve = 0.0, 0, []
    reached: dict[str, float | None] = {f"{t:g}": None for t in thresholds}
    point: dict[str, Any]
    while update < algorithm.num_updates:
        k = min(eval_every_updates, algorithm.num_updates - update)
        t0 = time.perf_counter()
        state, totals = compiled(state, jnp.int32(k))
        jax.block_until_ready(totals)
        train_seconds += time.perf_counter() - t0
        update += k
        point = {"env_steps": update * algorithm.steps_per_update, "train_seconds": train_seconds}
        count = float(totals.episode_count)
        point["training_return"] = float(totals.episode_sums["return"]) / count if count else None
        if evaluate is not None:
            point["greedy_return"] = float(np.asarray(evaluate(state, jax.random.PRNGKey(10_000 + seed))).mean())
            for t in thresholds:
                if reached[f"{t:g}"] is None and point["greedy_return"] >= t:
                    reached[f"{t:g}"] = train_seconds
        curve.append(point)
    env_steps = algorithm.num_updates * algorithm.steps_per_update
    return {
        "env_steps": env_steps,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "steps_per_second": env_steps / train_seconds,
        "seconds_to_threshold": reached,
        "curve": curve,
    }


def timed_runs(configs: dict[str, TrainConfig], seed: int, env_steps: int, repeats: int) -> dict[str, list[float]]:
    """Steps/s after compile of each config over `env_steps`, `repeats` times, the configs taking turns.

    Each run starts from the same initial state with one compiled chunk call; taking turns spreads the
    machine's drift (up to 25 % within minutes here) over every config alike.
    """
    key, runs = jax.random.PRNGKey(seed), {}
    for name, config in configs.items():
        algorithm = training.make_algorithm(with_steps(config, env_steps))
        init = jax.jit(algorithm.init)
        updates = jnp.int32(algorithm.num_updates)
        compiled = make_train_chunk(algorithm.train_step).lower(init(key), updates).compile()
        runs[name] = (compiled, init, updates, algorithm.num_updates * algorithm.steps_per_update)
    speeds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, (compiled, init, updates, steps) in runs.items():
            state = jax.block_until_ready(init(key))  # a fresh state: the chunk donates its input
            start = time.perf_counter()
            jax.block_until_ready(compiled(state, updates))
            speeds[name].append(steps / (time.perf_counter() - start))
    return speeds


def at_mark(curve: list[dict], mark: int, key: str) -> float | None:
    """`key` at the last evaluation at or before `mark` env steps, when the run got within 5 % of it."""
    points = [p for p in curve if p["env_steps"] <= mark and p.get(key) is not None]
    if not points or points[-1]["env_steps"] < 0.95 * mark:
        return None
    return points[-1][key]


def with_steps(config: TrainConfig, steps: int) -> TrainConfig:
    """`config` with its PPO run `steps` env steps long (the learning-rate schedule spans them)."""
    assert isinstance(config.algo, PPOConfig), f"P7 trains PPO; {config.name} has {type(config.algo).__name__}"
    return dataclasses.replace(config, algo=dataclasses.replace(config.algo, total_timesteps=steps))


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "not reached" if value is None else format(value, spec)


def main(args: Args) -> None:
    preset, thresholds, default_steps = PROTOCOLS[args.protocol]
    config = presets.get(preset)
    assert isinstance(config.algo, PPOConfig)
    steps = args.steps or default_steps or config.algo.total_timesteps
    per_update = config.algo.batch_size
    config = with_steps(config, steps)
    eval_every = max(1, (args.eval_every or steps // 20) // per_update)
    result = train_and_time(config, args.seed, eval_every, thresholds)
    rows = [
        ("compile (s)", f"{result['compile_seconds']:.1f}"),
        ("env steps/s after compile", f"{result['steps_per_second']:,.0f}"),
        ("training seconds", f"{result['train_seconds']:.1f}"),
    ]
    marks = {}
    for mark in MARKS:
        greedy, training_return = (
            at_mark(result["curve"], mark, "greedy_return"),
            at_mark(result["curve"], mark, "training_return"),
        )
        marks[str(mark)] = {"greedy_return": greedy, "training_return": training_return}
        rows.append((f"greedy / training return at {mark / 1e6:g}M steps", f"{fmt(greedy)} / {fmt(training_return)}"))
    last = result["curve"][-1]
    rows.append(
        (
            f"greedy / training return at the end ({last['env_steps']:,})",
            f"{fmt(last['greedy_return'])} / {fmt(last['training_return'])}",
        )
    )
    for t, seconds in result["seconds_to_threshold"].items():
        rows.append((f"train s to greedy >= {t}", fmt(seconds)))
    payload: dict[str, Any] = {"protocol": f"P7 {args.protocol}", "args": dataclasses.asdict(args), "preset": preset}
    payload.update({k: v for k, v in result.items()}, returns_at=marks)
    if args.comparison_steps:
        # Throughput only: no evaluation, the same env steps for each, each compiled once, taking turns.
        mlp_config = TrainConfig(name="purejaxrl_minatar", env="Breakout-MinAtar", algo=PUREJAXRL_MINATAR)
        # The preset takes turns too on MinAtar (~30 s a turn); on pixel CartPole a turn would take minutes, so its
        # ratio there uses the long run's steps/s.
        configs = {"mlp": mlp_config, "p1": presets.get("cartpole_ppo")}
        if args.protocol == "minatar":
            configs["preset"] = config
        speeds = timed_runs(configs, args.seed, args.comparison_steps, args.repeats)
        ratios = [m / p for m, p in zip(speeds["mlp"], speeds["p1"], strict=True)]
        preset_speeds = speeds.get("preset", [result["steps_per_second"]] * args.repeats)
        preset_ratios = [c / p for c, p in zip(preset_speeds, speeds["p1"], strict=True)]
        mlp, p1, ratio, preset_ratio = (
            float(np.median(x)) for x in (speeds["mlp"], speeds["p1"], ratios, preset_ratios)
        )
        payload["comparison"] = {
            "purejaxrl_settings_steps_per_second": mlp,
            "p1_steps_per_second": p1,
            "ratio_to_p1": ratio,
            "preset_ratio_to_p1": preset_ratio,
            "runs": {**speeds, "ratio_to_p1": ratios, "preset_ratio_to_p1": preset_ratios},
            "purejaxrl_ratio_to_p1": PUREJAXRL_RATIO,
            "env_steps": args.comparison_steps,
        }
        rows += [
            (f"P1 PPO CartPole steps/s (same process, median of {args.repeats})", f"{p1:,.0f}"),
            ("PureJaxRL MinAtar settings on vibe, steps/s", f"{mlp:,.0f}"),
            ("  ÷ vibe P1, median of pairs (PureJaxRL itself: 0.42)", f"{ratio:.2f}"),
            (f"{preset} steps/s ÷ vibe P1 (median of pairs on MinAtar)", f"{preset_ratio:.3f}"),
        ]
    report.print_table(rows, title=f"P7 {preset}: seed {args.seed}, {steps:,} env steps")
    report.write_json(user_path(args.out or f"bench_results/P7_{args.protocol}.json"), payload)


if __name__ == "__main__":
    main(tyro.cli(Args))
