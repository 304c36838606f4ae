"""The train chunk: K updates inside one jitted, donated call.

The host loop calls `chunk(state, k)` repeatedly; logging and (later)
checkpointing happen between calls, so nothing in the hot path syncs with the
host. `k` is a traced int32 so the last, shorter chunk reuses the same
executable: one compile per run.
"""

from collections.abc import Callable
from typing import Any, Protocol, cast

import jax
import jax.numpy as jnp

from vibe.algorithms.metrics import Metrics

State = Any
TrainStep = Callable[[State], tuple[State, Metrics]]


class TrainChunk(Protocol):
    """`(state, k) -> (state, summed metrics)`, jitted; `traces` counts its traces."""

    traces: list[int]

    def __call__(self, state: State, num_updates: Any) -> tuple[State, Metrics]: ...

    def lower(self, state: State, num_updates: Any) -> Any: ...


def make_train_chunk(
    train_step: TrainStep, state_shardings: Any = None, replicated: jax.sharding.Sharding | None = None
) -> TrainChunk:
    """jit(donated) of `k` sequential train steps; metrics are summed over them.

    With `state_shardings` (a pytree of shardings matching the state, e.g.
    `vibe.sharding.fsdp.state_shardings`) and `replicated` (the mesh's
    replicated sharding), the state goes in and comes out with exactly those
    shardings and the metrics come out replicated, so the chunk never moves
    the state between calls.

    The returned function has a `traces` attribute: a list that grows by one per
    trace, so tests can assert that the loop never recompiles.
    """
    traces: list[int] = []

    def chunk(state: State, num_updates: jax.Array) -> tuple[State, Metrics]:
        traces.append(1)
        _, metric_shapes = jax.eval_shape(train_step, state)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)

        def body(_: jax.Array, carry: tuple[State, Metrics]) -> tuple[State, Metrics]:
            state, totals = carry
            state, metrics = train_step(state)
            return state, jax.tree.map(jnp.add, totals, metrics)

        return jax.lax.fori_loop(0, num_updates, body, (state, zeros))

    if state_shardings is None:
        jitted = jax.jit(chunk, donate_argnums=0)
    else:
        jitted = jax.jit(
            chunk,
            in_shardings=(state_shardings, replicated),
            out_shardings=(state_shardings, replicated),
            donate_argnums=0,
        )
    jitted.traces = traces  # type: ignore[attr-defined]
    return cast(TrainChunk, jitted)
