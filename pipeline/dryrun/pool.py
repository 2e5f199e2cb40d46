"""Running the forecast's units on every core: here, in a process pool, or on Ray.

    pool = start_pool(models, workers_available())     # early: it imports while we plan
    for result in run_units(ctx, plan.units, backend="process", pool=pool):
        ...  # one small `UnitResult` per unit, in no particular order

Backends: `inline` (this process), `process` (this process and a pool of one more per
core, started with forkserver so no thread state is copied) and `ray` (tasks on the
cluster this process is connected to). Units are handed out in tasks of about
`TASK_ROWS` rows (`pipeline.dryrun.units.forecast_task`), two per pool process queued.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pipeline.dryrun.units import UnitContext, UnitResult, forecast_task
from pipeline.engine.plan import Unit
from pipeline.tokens import count_tokens_batch

Backend = Literal["inline", "process", "ray"]
# Rows per task: big enough that the frame library's per-call overhead is paid rarely
# (10,000 -> 40,000 took 1M rows from 5.3 s to 4.6 s here), small enough that the last
# task does not leave the other cores idle for long.
TASK_ROWS = 40_000


def tasks_of(units: Sequence[Unit], task_rows: int = TASK_ROWS) -> list[list[Unit]]:
    """Units in tasks of about `task_rows` rows. Units cut from the same row groups stay
    in one task, so a big row group is read once, not once per task."""
    tasks: list[list[Unit]] = []
    rows = task_rows
    last: tuple[str, tuple[int, ...]] | None = None
    for u in units:
        key = (u.source, u.row_groups)
        if rows >= task_rows and key != last:
            tasks.append([])
            rows = 0
        tasks[-1].append(u)
        rows += u.row_count
        last = key
    return tasks


def _warm(models: list[tuple[str, str]]) -> None:
    """Import everything and build the tokenizers before the first task arrives."""
    for model, family in models:
        count_tokens_batch(["warm up"], model, family)


def workers_available() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def start_pool(models: list[tuple[str, str]], workers: int) -> cf.ProcessPoolExecutor:
    """`workers - 1` processes (this one is the last worker), started now, so they import
    and build their tokenizers while this process finishes planning. forkserver: no
    thread state (polars', Ray's) is copied into them."""
    pool = cf.ProcessPoolExecutor(
        max(1, workers - 1), mp_context=multiprocessing.get_context("forkserver")
    )
    pool.submit(_warm, models)
    return pool


def run_units(
    ctx: UnitContext,
    units: Sequence[Unit],
    *,
    backend: Backend = "inline",
    workers: int | None = None,
    task_rows: int = TASK_ROWS,
    pool: cf.ProcessPoolExecutor | None = None,
) -> Iterator[UnitResult]:
    """Forecast every unit; yields results as tasks finish (not in unit order). The
    `process` backend uses `pool` when given (see `start_pool`), else its own."""
    tasks = tasks_of(units, task_rows)
    n = workers or workers_available()
    if backend == "inline" or len(tasks) <= 1 or n < 2:
        for t in tasks:
            yield from forecast_task(ctx, t)
    elif backend == "ray":
        yield from _run_ray(ctx, tasks, n)
    elif pool is not None:
        yield from _run_pool(ctx, tasks, pool, n - 1)
    else:
        models = [(tp.model, tp.family) for tp in ctx.tiers.values()]
        own = start_pool(models, n)
        try:
            yield from _run_pool(ctx, tasks, own, n - 1)
        finally:
            own.shutdown(cancel_futures=True)


def _run_pool(
    ctx: UnitContext, tasks: list[list[Unit]], pool: cf.ProcessPoolExecutor, size: int
) -> Iterator[UnitResult]:
    """Keep every pool process two tasks ahead, and work through tasks here in between."""
    queue = iter(tasks)
    pending: set[cf.Future[list[UnitResult]]] = set()
    while True:
        # Finished tasks out first, then top up: the pool never waits for this process.
        done = {f for f in pending if f.done()}
        pending -= done
        while len(pending) < 2 * size:
            task = next(queue, None)
            if task is None:
                break
            pending.add(pool.submit(forecast_task, ctx, task))
        for f in done:
            yield from _result(f)
        task = next(queue, None)
        if task is None:
            break
        yield from forecast_task(ctx, task)
    for f in cf.as_completed(pending):
        yield from _result(f)


def _result(f: cf.Future[list[UnitResult]]) -> list[UnitResult]:
    try:
        return f.result()
    except cf.process.BrokenProcessPool as exc:
        raise RuntimeError(
            "a forecast worker process died; a script that forecasts a big input must "
            'start from an `if __name__ == "__main__":` block (worker processes import it)'
        ) from exc


def _run_ray(ctx: UnitContext, tasks: list[list[Unit]], n: int) -> Iterator[UnitResult]:
    import ray

    remote = ray.remote(num_cpus=1, max_retries=2)(forecast_task)
    ctx_ref = ray.put(ctx)
    pending: list[Any] = []
    for t in tasks:
        pending.append(remote.remote(ctx_ref, t))
        if len(pending) >= 2 * n:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield from ray.get(ref)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            yield from ray.get(ref)
