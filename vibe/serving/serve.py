"""Serve a trained policy over websockets (openpi-client's protocol).

    tools/bazelw run //vibe/serving:server -- --policy.dir checkpoints/cartpole_ppo/default
    tools/bazelw run //vibe/serving:server -- --policy.dir RUN_DIR --policy.step 20000 --port 8000 --max-batch 16

The log shows the policy metadata, the warm-up time (every padded batch size
compiled once) and then ``serving on ws://127.0.0.1:8000``. Bound to 127.0.0.1
unless ``--host 0.0.0.0``; ``--api-key`` (or ``$VIBE_API_KEY``) makes clients
send ``Authorization: Api-Key <key>``. SIGTERM or Ctrl-C drains and exits 0.
A run dir without a usable checkpoint exits 2 with one line saying why.
"""

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated

import tyro

from vibe.core.usage import bazel_prog
from vibe.policies.policy import Policy
from vibe.serving.server import PolicyServer, ServerConfig


@dataclasses.dataclass(frozen=True)
class PolicyArgs:
    dir: str  # run directory holding the checkpoints (relative to where the command runs)
    step: str = "best"  # which checkpoint: best (latest when none is marked best), latest, or a step number


@dataclasses.dataclass(frozen=True)
class Args:
    policy: PolicyArgs
    server: Annotated[ServerConfig, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=ServerConfig)


def user_path(path: str) -> str:
    """A path the user typed, resolved where they stand (``bazel run`` runs inside the runfiles tree)."""
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), os.path.expanduser(path))


def parse_step(step: str) -> str | int:
    if step in ("best", "latest"):
        return step
    if step.isdigit():
        return int(step)
    raise ValueError(f"--policy.step {step!r}: expected best, latest or a step number")


def _create_trained_policy() -> Callable[..., Policy]:
    """The checkpoint loader, imported here only: it brings in JAX and the algorithms, which ``--help`` and a
    bad flag do not need."""
    from vibe.policies.trained import create_trained_policy

    return create_trained_policy


def main(args: Args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(asctime)s %(name)s] %(message)s")
    # orbax logs every step of the restore at INFO through absl, and JAX that this machine has no TPU.
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    run_dir = user_path(args.policy.dir)
    try:
        step = parse_step(args.policy.step)
        policy = _create_trained_policy()(run_dir, step=step)
    except (FileNotFoundError, ValueError) as e:
        message = " ".join(str(e).split())
        print(f"error: cannot serve {args.policy.dir} (step {args.policy.step}): {message}", file=sys.stderr)
        return 2
    PolicyServer(policy, args.server).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args, prog=bazel_prog())))
