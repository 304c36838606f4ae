"""The train chunk: K updates inside one jitted, donated call.

The host loop calls `chunk(state, k)` repeatedly; logging and (later)
checkpointing happen between calls, so nothing in the hot path syncs with the
host. `k` is a traced int32 so the last, shorter chunk reuses the same
executable: one compile per run.

An offline algorithm's dataset is a third, non-donated argument (`chunk(state,
k, data)` with `data_shardings`), not a closed-over constant: jax 0.11.2
embeds a closed-over array in the HLO as a literal (a ~50 MB dataset made
105 MB of HLO text, 2x the compile time and a copy; as an argument: 30 kB).
With `stacked=True` the third argument is instead one batch per update of the
chunk, stacked on a leading axis (the streaming loader's batches), and update
`i` runs `train_step(state, batch i)`.
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

    def __call__(self, state: State, num_updates: Any, *data: Any) -> tuple[State, Metrics]: ...

    def lower(self, state: State, num_updates: Any, *data: Any) -> Any: ...


def make_train_chunk(
    train_step: Callable[..., tuple[State, Metrics]],
    state_shardings: Any = None,
    replicated: jax.sharding.Sharding | None = None,
    *,
    data_shardings: Any = None,
    stacked: bool = False,
) -> TrainChunk:
    """jit(donated) of `k` sequential train steps; metrics are summed over them.

    With `state_shardings` (a pytree of shardings matching the state, e.g.
    `vibe.sharding.fsdp.state_shardings`) and `replicated` (the mesh's
    replicated sharding), the state goes in and comes out with exactly those
    shardings and the metrics come out replicated, so the chunk never moves
    the state between calls.

    With `data_shardings` (shardings of a dataset pytree), the chunk is `(state, k, data)` and runs
    `train_step(state, data)`; `data` is not donated, so the same arrays serve every chunk. With `stacked`,
    `data` holds a leading axis of (at least) `k` batches and update `i` gets `data[i]`.

    The returned function has a `traces` attribute: a list that grows by one per
    trace, so tests can assert that the loop never recompiles.
    """
    traces: list[int] = []

    def chunk(state: State, num_updates: jax.Array, *data: Any) -> tuple[State, Metrics]:
        traces.append(1)
        first = jax.tree.map(lambda x: x[0], data) if stacked else data
        _, metric_shapes = jax.eval_shape(train_step, state, *first)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)

        def body(i: jax.Array, carry: tuple[State, Metrics]) -> tuple[State, Metrics]:
            state, totals = carry
            args = jax.tree.map(lambda x: x[i], data) if stacked else data
            state, metrics = train_step(state, *args)
            return state, jax.tree.map(jnp.add, totals, metrics)

        return jax.lax.fori_loop(0, num_updates, body, (state, zeros))

    extra = () if data_shardings is None else (data_shardings,)
    if state_shardings is None:
        jitted = jax.jit(chunk, donate_argnums=0)
    else:
        jitted = jax.jit(
            chunk,
            in_shardings=(state_shardings, replicated, *extra),
            out_shardings=(state_shardings, replicated),
            donate_argnums=0,
        )
    jitted.traces = traces  # type: ignore[attr-defined]
    return cast(TrainChunk, jitted)
