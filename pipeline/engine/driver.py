"""Starts the actors, hands units to workers until none are left, writes the summary.

    summary = run_job(spec, output_uri=None, job_id=None, progress=ConsoleProgress())

Workers pull: each idle worker gets the next unit the moment it reports the last one.
A worker that dies mid-unit is replaced and its unit handed out again; the unit's files
are rewritten whole and its commit marker comes last, so nothing is counted twice.

An actor the workers cannot do without (the job's budget, a daily budget, the simulator)
is watched; its loss stops the run within seconds, naming it, as SIGTERM and Ctrl-C do
(`pipeline.engine.stopping`): no more units, calls in flight get `run.stop_grace_s`, their
answers are journalled, and the same command run again finishes the job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.drift.canary import CanaryAnswer, CanaryResult, CanaryTarget, failure_message
from pipeline.drift.shift import ShiftReport, previous_summary, shift_report
from pipeline.engine.actors import SimActor, WorkerActor
from pipeline.engine.canary import GoldenRow, run_canary
from pipeline.engine.checks import check_spec
from pipeline.engine.journal import clear_settled, journalled_rows, journalled_usd
from pipeline.engine.plan import Plan, Unit, make_plan
from pipeline.engine.stall import StallWatch
from pipeline.engine.stopping import ActorWatch, StopRequest
from pipeline.engine.summary import JobSummary, attach_forecast, build_summary, write_summary
from pipeline.engine.worker import UnitReport
from pipeline.errors import CanaryFailed, TerminalError, TierlineError
from pipeline.jobfolder import JobFolder, batch_turnaround, history_dirs
from pipeline.limits.budget_actor import (
    job_actor_name,
    spent_in_commits,
    start_budget,
    start_daily_budget,
)
from pipeline.limits.quota_actor import account_key, ensure_quota_actor
from pipeline.metrics import Metrics
from pipeline.store import Store
from schemas.job import JobSpec, SpecError, deadline_at

log = logging.getLogger("tierline")

POLL_S = 1.0
WAIT_S = 0.5  # how long the hand-out loop waits for a unit: a stop is seen within this
LOST_CHECK_S = 5.0  # after a unit met a lost actor: how long to wait for the pings
DRAIN_MARGIN_S = 3.0  # past the stop's grace, for the workers to journal and answer
CLOSE_S = 5.0  # for every worker together to close its sessions at the end
# Units each worker runs at once. Two overlap one unit's read, tail and write with the
# next one's calls, so the worker's in-flight slots stay full (the latency-bound
# benchmark: 0.63 of a bare aiohttp client with one, 0.87 with two).
UNITS_PER_WORKER = 2


def _add(dicts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return total


class Progress(Protocol):
    def start(
        self,
        job_id: str,
        rows_total: int,
        rows_done: int,
        units_todo: int,
        *,
        budget_usd: float | None = None,
        forecast_usd: float | None = None,
        spent_usd: float = 0.0,
    ) -> None: ...
    def advance(self, report: UnitReport) -> None: ...
    def live(self, figures: dict[str, Any]) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...


class QuietProgress:
    def start(
        self, job_id: str, rows_total: int, rows_done: int, units_todo: int, **_: Any
    ) -> None:
        return None

    def advance(self, report: UnitReport) -> None:
        return None

    def live(self, figures: dict[str, Any]) -> None:
        return None

    def note(self, message: str) -> None:
        log.info(message)

    def stop(self) -> None:
        return None


def preflight(spec: JobSpec) -> None:
    """Fail before Ray starts or any call: the checks `tierline validate` and
    `pipeline.check` make (prices, routers, the canary's set, key variables), whoever
    calls `run_job`. Raises `SpecError` listing every problem."""
    problems = check_spec(spec)
    if problems:
        raise SpecError("<JobSpec>", problems)


def ensure_ray() -> bool:
    """Connect to Ray; True when this call started a private one (this run owns it)."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        # Join the cluster the user named (RAY_ADDRESS=auto finds a local `ray start`).
        ray.init(address=address, logging_level=logging.WARNING)
        return False
    else:
        # Start a private Ray for this run; never attach to whatever else runs here.
        # Ray turns token authentication on for it, as it should, and says so on every
        # start: a notice for Ray's operators, not for the user of this one-run cluster.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        return True


def sim_config_json(spec: JobSpec, provider: str) -> str:
    served = [d.model for d in spec.deployments() if d.provider == provider]
    return spec.providers[provider].sim.to_sim_config(served).model_dump_json()


def start_quotas(
    spec: JobSpec, endpoints: dict[str, str], pending: list[Any] | None = None
) -> dict[str, str]:
    """Find or create the quota actor of every account the job uses; key -> actor name.
    Keys are the provider name, or 'provider::model' where limits are per model.
    With `pending`, the calls that set their limits are left there to be waited on."""
    names: dict[str, str] = {}
    for dep in spec.deployments():
        limits = spec.providers[dep.provider].limits
        key = f"{dep.provider}::{dep.model}" if limits.per_model else dep.provider
        if key in names:
            continue
        model = dep.model if limits.per_model else None
        names[key] = account_key(spec, dep.provider, endpoints.get(dep.provider), model)
        ensure_quota_actor(names[key], limits, pending)
    return names


def watch_actors(
    watch: ActorWatch,
    spec: JobSpec,
    job_id: str,
    budget: Any,
    sims: dict[str, Any],
    pending: list[Any] | None = None,
) -> None:
    """The actors no worker can replace: the job's budget, the providers' daily budgets,
    the simulators. (Quota actors restart by themselves and are not watched.)"""
    if budget is not None:
        watch.add(f"the job's budget actor ({job_actor_name(job_id)})", budget)
    for name, p in spec.providers.items():
        if p.daily_budget_usd:
            daily = start_daily_budget(name, p.daily_budget_usd, pending=pending)
            watch.add(f"the daily budget actor of provider {name!r}", daily)
    for name, actor in sims.items():
        watch.add(f"the simulator actor of provider {name!r}", actor)


@dataclass
class _Dispatch:
    spec: JobSpec
    plan: Plan
    output_uri: str
    endpoints: dict[str, str]
    quota_actors: dict[str, str]
    progress: Progress
    workers: list[Any] = field(default_factory=list)
    tries: dict[int, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    workers_lost: int = 0
    deadline_at: float | None = None  # run.deadline as epoch seconds, fixed at the start
    stop: StopRequest = field(default_factory=StopRequest)
    watch: ActorWatch = field(default_factory=ActorWatch)
    batch_turnaround_s: float | None = None  # from earlier runs' batches, when known
    ran: bool = False  # `run` began: its end closes the workers

    def canary(self) -> CanaryResult:
        """The golden set through every routed deployment, in a worker of its own (the
        job's limits and budget apply), before any unit is handed out."""
        worker = self._new_worker()

        def ask(
            rows: list[GoldenRow], targets: list[CanaryTarget]
        ) -> tuple[list[CanaryAnswer], Any]:
            try:
                answers, costs = ray.get(worker.canary.remote(rows, targets))
            except RayTaskError as exc:
                cause = exc.cause if exc.cause is not None else exc
                if isinstance(cause, TierlineError):
                    raise cause from None
                raise
            return answers, costs

        try:
            return run_canary(self.spec, self.output_uri, self.plan.job_id, ask)
        finally:
            with contextlib.suppress(Exception):  # a dead worker has nothing to close
                ray.get(worker.close.remote(), timeout=10)
            ray.kill(worker)

    def _new_worker(self) -> Any:
        # SPREAD: I/O workers over every node, so losing one node loses few of them.
        return WorkerActor.options(  # type: ignore[attr-defined]
            num_cpus=self.spec.run.worker_cpus, scheduling_strategy="SPREAD"
        ).remote(
            self.spec.model_dump_json(),
            self.plan.job_id,
            self.output_uri,
            self.endpoints,
            self.quota_actors,
            self.deadline_at,
            self.batch_turnaround_s,
            self.watch.actors,
        )

    def start_workers(self) -> None:
        """Start the worker actors (their processes come up while the driver goes on)."""
        if not self.workers:
            n = min(self.spec.run.workers, len(self.plan.todo))
            self.workers = [self._new_worker() for _ in range(n)]

    def dismiss(self) -> None:
        """End workers that were started but never ran (a failed canary, an error)."""
        if not self.ran:
            for w in self.workers:
                with contextlib.suppress(Exception):
                    ray.kill(w)

    def run(self) -> None:
        self.ran = True
        queue: deque[Unit] = deque(self.plan.todo)
        self.start_workers()
        running: dict[Any, tuple[Any, Unit]] = {}
        # One entry per free slot: a worker appears once for each unit it could take.
        idle = [w for _ in range(UNITS_PER_WORKER) for w in self.workers]
        dead: set[int] = set()
        last_poll = time.monotonic()
        stall = StallWatch(self.spec.run.stall_timeout_s)
        while (queue or running) and not self.stop.requested:
            while idle and queue:
                w, u = idle.pop(0), queue.popleft()
                running[w.process.remote(u, self.plan.committed.get(u.index))] = (w, u)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
            if time.monotonic() - last_poll >= POLL_S:
                last_poll = time.monotonic()
                busy = {id(w): w for w, _ in running.values()}
                stall.observe(self._poll(list(busy.values())), workers=len(busy))
            self.stop.set(self.watch.lost() or stall.stalled())
            for ref in ready:
                stall.unit_ended()
                worker, unit = running.pop(ref)
                try:
                    report: UnitReport = ray.get(ref)
                except RayTaskError as exc:
                    # The worker is alive and answered with an error. Caught before
                    # RayActorError: an error raised by another actor the unit called
                    # (the budget, say) is both, and is not the loss of this worker.
                    idle.append(worker)
                    self._failed(unit, queue, exc)
                    continue
                except RayActorError:
                    # The process died (killed, node lost): redo the unit; replace the
                    # worker once, however many of its units fail with it.
                    self.progress.note(
                        f"worker lost during unit {unit.index}; handing it out again"
                    )
                    self._retry(unit, queue, "its worker died each time", systemic=True)
                    if id(worker) not in dead:
                        dead.add(id(worker))
                        self.workers_lost += 1
                        idle = [w for w in idle if w is not worker]
                        replacement = self._new_worker()
                        self.workers.append(replacement)
                        idle.extend([replacement] * UNITS_PER_WORKER)
                    continue
                self.progress.advance(report)
                idle.append(worker)
        self._drain(running)

    def _failed(self, unit: Unit, queue: deque[Unit], exc: RayTaskError) -> None:
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, RayActorError):
            # An actor the unit called is gone. One the job cannot do without stops it
            # (asked now, not at the next ping: the other units would fail the same way).
            lost = self.watch.lost(wait_s=LOST_CHECK_S)
            if lost is not None:
                self.stop.set(lost)
                return
            self._retry(unit, queue, f"an actor it called was lost: {cause}", systemic=True)
            return
        self.progress.note(f"unit {unit.index} ({unit.source}) failed: {cause}")
        # Bad input will not get better; anything else is worth another try.
        terminal = isinstance(cause, TerminalError)
        self._retry(unit, queue, str(cause), transient=not terminal)

    def _drain(self, running: dict[Any, tuple[Any, Unit]]) -> None:
        """The end of the run. After a stop, the workers start no more rows, calls in
        flight get `run.stop_grace_s` (none once the stop is hard: a second Ctrl-C) and
        what was answered is journalled; then every worker closes its sessions and ends."""
        if running:
            grace = self.spec.run.stop_grace_s
            self.progress.note(
                f"stopping: {self.stop.reason}; "
                + ("now" if self.stop.hard else f"calls in flight get up to {grace:g} s")
            )
            told_hard = self.stop.hard
            self._tell_stop(0.0 if told_hard else grace)
            # The workers keep the grace themselves; this bound covers one that hangs.
            end = time.monotonic() + (0.0 if told_hard else grace) + DRAIN_MARGIN_S
            while running and time.monotonic() < end:
                if self.stop.hard and not told_hard:  # asked again: cut the calls off now
                    told_hard = True
                    self._tell_stop(0.0)
                    end = min(end, time.monotonic() + DRAIN_MARGIN_S)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    running.pop(ref)
                    with contextlib.suppress(Exception):  # a failed unit is redone later
                        report: UnitReport = ray.get(ref)
                        if not report.stopped:
                            self.progress.advance(report)
        closing = [w.close.remote() for w in self.workers]
        with contextlib.suppress(Exception):  # a dead or stuck worker has nothing to close
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_S)
        for w in self.workers:
            with contextlib.suppress(Exception):
                ray.kill(w)

    def _tell_stop(self, grace_s: float) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):  # a dead worker has no calls in flight
                w.stop.remote(grace_s)

    def _poll(self, busy: list[Any]) -> list[dict[str, Any]]:
        """Ask busy workers for live figures; a slow or dead one is simply left out."""
        refs = [w.stats.remote() for w in busy]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.5)
        snaps = []
        for ref in ready:
            with contextlib.suppress(Exception):
                snaps.append(ray.get(ref))
        live = {
            "unit_rows": sum(s["unit_rows"] for s in snaps),
            "in_flight": _add(s["in_flight"] for s in snaps),
            "rate_limited": _add(s["rate_limited"] for s in snaps),
            "retries": _add(s["retries"] for s in snaps),
        }
        self.progress.live(live)
        return snaps

    def _retry(
        self,
        unit: Unit,
        queue: deque[Unit],
        reason: str,
        transient: bool = True,
        systemic: bool = False,
    ) -> None:
        """Hand the unit out again, up to `run.max_unit_handouts`; then fail it, or, when
        the cause is not the unit's own (`systemic`: workers or actors dying), stop the
        job naming the cause rather than let every unit loop on it."""
        self.tries[unit.index] = self.tries.get(unit.index, 0) + 1
        tries = self.tries[unit.index]
        if transient and tries < self.spec.run.max_unit_handouts:
            queue.append(unit)
            return
        self.failed[unit.index] = reason
        if systemic:
            self.stop.set(f"unit {unit.index} was handed out {tries} times and {reason}")


def run_job(
    spec: JobSpec,
    *,
    output_uri: str | None = None,
    job_id: str | None = None,
    progress: Progress | None = None,
    stop: StopRequest | None = None,
) -> JobSummary:
    """Run (or resume) the job; `stop` lets a caller end it early, as a signal does."""
    progress = progress or QuietProgress()
    started = time.monotonic()
    preflight(spec)
    out_uri = output_uri or spec.output.uri
    plan = make_plan(spec, output_uri=out_uri, job_id=job_id)
    for bad in plan.bad_files:
        progress.note(f"skipping {bad.source}: {bad.reason}")
    # A run ended between a unit's marker and the clearing of its journal left the
    # journal behind; the marker counts, and the budget below must not count it again.
    if cleared := clear_settled(JobFolder.open(out_uri, plan.job_id), plan.committed):
        log.info("removed %d journal parts of units already committed", cleared)
    done_rows = sum(c.row_count - c.rows_retryable for c in plan.committed.values())
    todo = plan.todo
    failed: dict[int, str] = {}
    retried = lost = 0
    canary: CanaryResult | None = None
    stop = stop or StopRequest()
    private = False
    if todo:
        private = ensure_ray()
        endpoints: dict[str, str] = {}
        sims: dict[str, Any] = {}
        used = {d.provider for d in spec.deployments()}
        for name, p in spec.providers.items():
            if p.kind == "sim" and name in used:
                # On the driver's node, at the address Ray knows that node by.
                here = NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=False
                )
                actor = SimActor.options(scheduling_strategy=here).remote()  # type: ignore[attr-defined]
                endpoints[name] = ray.get(actor.start.remote(sim_config_json(spec, name)))
                sims[name] = actor
        progress.start(
            plan.job_id,
            plan.rows_total,
            done_rows,
            len(todo),
            budget_usd=spec.budget_usd,
            forecast_usd=JobFolder.open(out_uri, plan.job_id).forecast_p50_usd(),
            spent_usd=sum(c.cost_usd for c in plan.committed.values()),
        )
        # Every actor the job needs starts at once, and the workers with them: each new
        # actor is a process of its own (about a second, most of it imports), and they
        # were started one after another. No unit is handed out before all are set up.
        pending: list[Any] = []
        quotas = start_quotas(spec, endpoints, pending)
        budget = None
        if spec.budget_usd:
            # The cap is for the whole job: what committed units cost already counts.
            # Held here: the actor lives as long as this handle does.
            # So do answers an interrupted run paid for, journalled but not committed,
            # and what an earlier canary of this job cost.
            folder = JobFolder.open(out_uri, plan.job_id)
            spent = (
                spent_in_commits(plan.committed.values())
                + journalled_usd(folder, (u.index for u in todo))
                + folder.canary_spent_usd()
            )
            budget = start_budget(plan.job_id, spec.budget_usd, spent, pending)
        deadline = (
            deadline_at(spec.run.deadline, datetime.now(UTC)).timestamp()
            if spec.run.deadline
            else None
        )
        turnaround = None
        if spec.run.mode != "sync":
            root = Store.open(out_uri)
            dirs = history_dirs(root, spec.name, plan.job_id)
            turnaround, source = batch_turnaround(root, dirs, spec.run.batch_turnaround_s)
            log.info("batch turnaround %.0f s: %s", turnaround, source)
        dispatch = _Dispatch(
            spec, plan, out_uri, endpoints, quotas, progress,
            deadline_at=deadline, batch_turnaround_s=turnaround, stop=stop,
        )  # fmt: skip
        watch_actors(dispatch.watch, spec, plan.job_id, budget, sims, pending)
        try:
            dispatch.start_workers()
            ray.get(pending)
            with stop.on_signals():
                if spec.routing.canary is not None:
                    progress.note("canary: asking the golden set of every routed deployment")
                    canary = dispatch.canary()
                if canary is None or canary.passed:
                    dispatch.run()
        finally:
            dispatch.dismiss()  # workers a canary or an error kept from running
            progress.stop()
            if budget is not None:
                ray.kill(budget)
            for actor in sims.values():
                with contextlib.suppress(Exception):
                    ray.get(actor.stop.remote(), timeout=10)
                ray.kill(actor)
        failed = dispatch.failed
        retried, lost = sum(dispatch.tries.values()), dispatch.workers_lost
    else:
        progress.note(
            "nothing to do: every unit is already committed"
            if plan.units
            else "the input holds no rows"
        )
    summary = build_summary(
        spec, plan, out_uri, wall_s=time.monotonic() - started, failed_units=failed
    )
    summary.units_retried, summary.workers_lost = retried, lost
    summary.canary = canary
    summary.stopped = stop.reason
    if stop.requested:
        # What the stop kept beyond the commits: answers paid for, taken back by the rerun.
        folder = JobFolder.open(out_uri, plan.job_id)
        pending = [u.index for u in plan.units if u.index not in plan.committed]
        summary.rows_journalled = journalled_rows(folder, pending)
        summary.journalled_usd = journalled_usd(folder, pending)
        if private:
            # A stopped run leaves nothing behind: not its workers, not the quota actors
            # (detached, so they outlive a driver), not the private Ray itself.
            ray.shutdown()
    attach_forecast(summary, out_uri)
    summary.reasons = summary.why_incomplete()
    if canary is not None and not canary.passed:
        write_summary(out_uri, plan.job_id, summary)
        raise CanaryFailed(failure_message(canary), job_id=plan.job_id)
    summary.shift = _shift(spec, out_uri, summary)
    write_summary(out_uri, plan.job_id, summary)
    _export_drift(summary)
    return summary


def _shift(spec: JobSpec, out_uri: str, summary: JobSummary) -> ShiftReport:
    """This run's tier shares and rates against the previous run of the same job name."""
    assert summary.finished_at is not None
    found = previous_summary(Store.open(out_uri), spec.name, summary.job_id, summary.finished_at)
    return shift_report(found, summary.model_dump(mode="json"), spec.routing.shift_threshold)


def _export_drift(summary: JobSummary) -> None:
    """The canary's and the shift's figures as metrics (no-ops outside Ray)."""
    metrics = Metrics(summary.job_id)
    for s in summary.canary.deployments if summary.canary else []:
        metrics.canary(s.deployment, s.tier, s.accuracy)
    for item in summary.shift.metrics if summary.shift else []:
        metrics.shift(item.metric, item.delta, item.flagged)
    if summary.shift and summary.shift.flagged:
        log.warning(
            "routing shifted since %s: %s",
            summary.shift.previous_job,
            ", ".join(summary.shift.flagged),
        )
