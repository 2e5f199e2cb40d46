"""One unit: read -> route -> call -> account -> write, then commit.

    runner = UnitRunner(spec, job_id, output_uri, endpoints)
    async with runner:
        report = await runner.process(unit)

`UnitRunner` is plain async Python (tests drive it without Ray); `pipeline.engine.driver` wraps
it in a Ray actor. Every row of the unit leaves as exactly one result or error row, and
the commit marker is written only after all three data files are durable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import framing_tokens, get_job_kind
from pipeline.calls.batching import BatchAwareLimiter, BatchingProvider, BatchPlan, SyncCall
from pipeline.calls.cache import ResponseCache
from pipeline.calls.execute import Limiter, RowExecutor
from pipeline.calls.outcome import RowOutcome
from pipeline.calls.retry import RetryPolicy
from pipeline.calls.reuse import AnswerReuse, InFlight, Row, split_rows
from pipeline.engine.commit import read_commit, write_unit
from pipeline.engine.figures import unit_figures
from pipeline.engine.journal import UnitJournal, take_back
from pipeline.engine.outputs import results_schema, row_costs, unit_tables
from pipeline.engine.plan import Unit
from pipeline.engine.rows import ID, SENSITIVE, TEXT, TIER, prepare_unit, read_unit, unit_columns
from pipeline.engine.stopping import RowGate
from pipeline.errors import TierlineError
from pipeline.jobfolder import BatchJournal, JobFolder
from pipeline.limits.budget import Budgets
from pipeline.limits.limiter import LocalLimiter
from pipeline.limits.quota_actor import ClusterLimiter
from pipeline.longdoc.run import LongDocs
from pipeline.metrics import Metrics
from pipeline.providers import registry
from pipeline.providers.base import ChatRequest, ChatResponse, Provider
from pipeline.store import Store
from pipeline.tokens import count_tokens, count_tokens_batch
from schemas.figures import UnitFigures
from schemas.job import CascadeSpec, Deployment, ExtractTask, JobSpec
from schemas.prices import PriceTable
from schemas.records import UnitCommit

log = logging.getLogger(__name__)

NOT_ASKED = "not_asked"  # a row a stop kept from its answer (never written: no commit)
# Providers cache a prompt prefix from this length on (OpenAI's rule; Anthropic's smallest).
PROMPT_CACHE_MIN_TOKENS = 1024


@dataclass(frozen=True)
class UnitReport:
    unit: int
    rows: int
    rows_ok: int
    rows_error: int
    calls: int
    cost_usd: float
    tiers: dict[str, int]
    stopped: bool = False  # the run stopped: not committed, its answers journalled


class UnitRunner:
    def __init__(
        self,
        spec: JobSpec,
        job_id: str,
        output_uri: str,
        endpoints: dict[str, str],
        *,
        prices: PriceTable | None = None,
        limiter: Limiter | None = None,
        quota_actors: dict[str, str] | None = None,
        client_id: str = "local",
        budget_actors: bool = False,
        deadline_at: float | None = None,
        batch_turnaround_s: float | None = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        # Raises when the unit must not commit (an actor it needed was lost meanwhile).
        self.before_commit = before_commit
        self.job_id = job_id
        self.input = Store.open(spec.input.uri)
        self.out = Store.open(output_uri).child(job_id)
        self.output_root = output_uri
        self.reuse = AnswerReuse(spec, get_job_kind(spec.task), None)
        self.longdocs: LongDocs | None = None
        self.endpoints = endpoints
        self.prices = prices or spec.price_table()
        self.kind = get_job_kind(spec.task)
        self.metrics = Metrics(job_id)
        if limiter is None and quota_actors:
            limiter = ClusterLimiter(spec, quota_actors, client_id, on_pause=self.metrics.pause)
        self.limiter = limiter or LocalLimiter({n: p.limits for n, p in spec.providers.items()})
        self.policy = RetryPolicy(
            max_attempts=spec.run.max_attempts, deadline_s=spec.run.row_deadline_s
        )
        self.session: aiohttp.ClientSession | None = None
        self.executor: RowExecutor | None = None
        # One bound on calls in flight for the whole worker, shared by the units it
        # overlaps, so the next unit's rows fill the slots the last one's tail frees.
        self.in_flight = asyncio.Semaphore(spec.run.max_in_flight)
        self.in_flight_requests = InFlight()  # identical rows across overlapping units
        self.client_id = client_id
        self.budget_actors = budget_actors
        self.budgets = Budgets()
        self.deadline_at = deadline_at
        # Earlier runs' batches, when the driver found enough; else the spec's default.
        self.batch_turnaround_s = batch_turnaround_s or spec.run.batch_turnaround_s
        self.batching: dict[str, BatchingProvider] = {}
        self.sync_providers: dict[str, Provider] = {}
        self.gate = RowGate()

    def _budgets(self) -> Budgets:
        """The job's budget and the providers' daily budgets, as leases from their actors."""
        if not self.budget_actors:
            return Budgets()
        from pipeline.limits.budget_actor import daily_budget_client, job_budget_client

        job = job_budget_client(self.job_id, self.client_id) if self.spec.budget_usd else None
        daily = {
            name: daily_budget_client(name, p.daily_budget_usd, self.client_id)
            for name, p in self.spec.providers.items()
            if p.daily_budget_usd
        }
        return Budgets(job, daily)

    async def __aenter__(self) -> UnitRunner:
        self.budgets = self._budgets()
        cache = None
        if self.spec.cache != "off":
            root = self.spec.cache_uri or (self.output_root.rstrip("/") + "/_cache")
            cache = ResponseCache(Store.open(root), self.spec.cache)
        self.reuse = AnswerReuse(self.spec, self.kind, cache)
        connector = aiohttp.TCPConnector(limit=self.spec.run.max_in_flight, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(connector=connector)
        providers: dict[str, Provider] = {
            name: registry.create(
                p.kind,
                name=name,
                base_url=self.endpoints.get(name) or p.base_url or "",
                api_key_env=p.api_key_env,
                timeouts=p.timeouts,
                azure=p.azure,
            )
            for name, p in self.spec.providers.items()
        }
        tiers: dict[str, list[Deployment]] = {t: list(d) for t, d in self.spec.tiers.items()}
        self.sync_providers = providers  # the canary asks synchronously, whatever run.mode
        providers = self._batched(providers)
        self.executor = RowExecutor(
            self.kind,
            providers,
            tiers,
            self.session,
            BatchAwareLimiter(self.limiter, set(self.batching)),
            self.policy,
            on_tier_down=self.spec.routing.on_tier_down,
            context_windows=self._context_windows(),
            cascade=self._cascade(),
            vote=self.spec.routing.vote,
            metrics=self.metrics,
            budgets=self.budgets,
            prices=self.prices,
            breaker_failures=self.spec.run.breaker_failures,
            breaker_cooldown_s=self.spec.run.breaker_cooldown_s,
            rng=random.Random(),
            cache_key=f"tierline-{self.spec.name}-{self.spec.task.kind}",
            cache_prefix=self._shared_prefix(),
            reasoning_effort={n: p.reasoning_effort for n, p in self.spec.providers.items()},
            strategies=self.spec.strategies(),
            hedge=self.spec.run.hedge,
            structured={n: p.structured_output for n, p in self.spec.providers.items()},
            reasks=task.reasks if isinstance(task := self.spec.task, ExtractTask) else 0,
            compare_fields=task.compared_fields() if isinstance(task, ExtractTask) else None,
        )
        if self.spec.task.kind == "summarise":
            self.longdocs = LongDocs(self.spec, self.prices, self.executor)
        return self

    def _batched(self, providers: dict[str, Provider]) -> dict[str, Provider]:
        """Under run.mode batch or auto, the providers with a batch API send through it."""
        run = self.spec.run
        if run.mode == "sync":
            return providers
        plan = BatchPlan(
            mode=run.mode,
            deadline_at=self.deadline_at,
            turnaround_s=self.batch_turnaround_s,
            sync_reserve_s=run.batch_sync_reserve_s,
            poll_s=run.batch_poll_s,
        )
        journal = BatchJournal(JobFolder(self.out))
        out: dict[str, Provider] = dict(providers)
        for name, p in self.spec.providers.items():
            if not registry.supports_batch(p.kind):
                continue
            batches = registry.create_batch(
                p.kind,
                name=name,
                base_url=self.endpoints.get(name) or p.base_url or "",
                api_key_env=p.api_key_env,
                timeouts=p.timeouts,
            )
            batching = BatchingProvider(
                name=name,
                sync=providers[name],
                batches=batches,
                journal=journal,
                plan=plan,
                sync_call=self._sync_call(providers[name]),
            )
            self.batching[name] = batching
            out[name] = batching
        return out

    def _sync_call(self, provider: Provider) -> SyncCall:
        """A direct call under the quota limiter: for requests a batch hands back."""
        limiter = self.limiter

        async def call(session: aiohttp.ClientSession, request: ChatRequest) -> ChatResponse:
            dep = Deployment(provider=provider.name, model=request.model)
            text = "".join(m.content for m in request.messages)
            tokens = request.max_tokens + count_tokens(text, request.model)
            try:
                async with limiter.slot(dep, tokens):
                    response = await provider.complete(session, request)
            except TierlineError as exc:
                limiter.feedback(dep, exc, None, tokens)
                raise
            limiter.feedback(dep, None, response, tokens)
            return response

        return call

    def _shared_prefix(self) -> int:
        """Leading messages every row shares (the task's instructions), when long enough
        for a provider to cache (1,024 tokens) under some model's prompt variant; the
        row's own text always comes last."""
        best = 0
        for model in [None, *(d.model for d in self.spec.deployments())]:
            shared = self.kind.build_messages("", model)[:-1]
            tokens = sum(count_tokens(m.content, "gpt-4o") for m in shared)
            if shared and tokens >= PROMPT_CACHE_MIN_TOKENS:
                best = max(best, len(shared))
        return best

    def _prompt_tokens(self, model: str) -> int:
        """Tokens of the request around the row's text: instructions and chat framing."""
        return framing_tokens(self.kind, model)

    def _cascade(self) -> CascadeSpec | None:
        routing = self.spec.routing
        if routing.cascade is None and routing.policy == "cascade":
            return CascadeSpec()  # the task's own validation decides escalation
        return routing.cascade

    def _context_windows(self) -> dict[str, int]:
        windows = {}
        for dep in self.spec.deployments():
            try:
                windows[dep.model] = self.prices.lookup(dep.model).context_window
            except KeyError:
                continue  # validation already refused unpriced models
        return windows

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._flush_cache(None)
        await self.budgets.close()
        for batching in self.batching.values():
            await batching.close()
        if isinstance(self.limiter, ClusterLimiter):
            await self.limiter.close()
        if self.session is not None:
            await self.session.close()

    # --- the steps ------------------------------------------------------------------

    def prepare(self, table: pa.Table, unit: int = 0) -> tuple[pl.DataFrame, list[RowOutcome]]:
        """Rows to call (id, text, tier) and the rows that fail before any call."""
        prep = prepare_unit(table, self.spec, unit)
        now = time.time()
        early = [
            RowOutcome(id=rid, tier=tier, ok=False, error_type=etype, message=msg, completed_at=now)
            for rid, tier, etype, msg in prep.early.iter_rows()
        ]
        return prep.todo, early

    def _row_tokens(self, todo: pl.DataFrame) -> tuple[list[int], list[int]]:
        """Per row: input tokens of its first call (text + prompt), and of its text alone,
        counted with the tokenizer of its tier's first model."""
        tokens = [0] * todo.height
        text_tokens = [0] * todo.height
        for tier, idx in todo.with_row_index("__i").group_by(TIER).agg(pl.col("__i")).iter_rows():
            deps = self.spec.tiers.get(tier) or []
            model = deps[0].model if deps else ""
            counts, _ = count_tokens_batch(todo[TEXT].gather(idx), model)
            overhead = self._prompt_tokens(model)
            for i, c in zip(idx, counts, strict=True):
                text_tokens[i] = int(c)
                tokens[i] = int(c) + overhead
        return tokens, text_tokens

    def _call_plan(
        self, todo: pl.DataFrame
    ) -> tuple[list[int], list[int], list[Row], list[str | None]]:
        """Per row: its tokens (see `_row_tokens`), (id, text, tier, sensitive) and its
        reuse key; in a thread, off the loop."""
        tokens, text_tokens = self._row_tokens(todo)
        rows = [
            (rid, text, tier, bool(sens))
            for rid, text, tier, sens in todo.select(ID, TEXT, TIER, SENSITIVE).iter_rows()
        ]
        return tokens, text_tokens, rows, self.reuse.keys(rows)

    async def call_all(
        self, todo: pl.DataFrame, journal: UnitJournal | None = None
    ) -> list[RowOutcome]:
        """Every row's outcome; each answer goes to `journal` as it arrives."""
        assert self.executor is not None
        executor = self.executor
        # Batched calls wait in a provider batch, not in a connection: no bound here.
        sem = self.in_flight if not self.batching else asyncio.Semaphore(1 << 30)
        tokens, text_tokens, rows, keys = await asyncio.to_thread(self._call_plan, todo)
        longdocs = self.longdocs

        rule = self.spec.routing.sensitive
        allowed = frozenset(rule.allowed_providers) if rule is not None else None

        async def one(i: int, rid: str, text: str, tier: str, sensitive: bool) -> RowOutcome:
            only = allowed if sensitive else None

            async def ask() -> RowOutcome | None:
                if longdocs is not None and longdocs.too_long(tier, tokens[i]):
                    # Map-reduce (or a longer-context tier): its calls share the limits below.
                    return await longdocs.run(rid, text, tier, text_tokens[i], only)
                async with sem:
                    if self.gate.stopping:  # waited for a slot while the run was stopping
                        return None
                    return await executor.run(rid, text, tier, tokens[i], only)

            outcome = await self.gate.run(ask)
            if outcome is None:  # not asked, or cut off by the stop: the unit won't commit
                return RowOutcome(id=rid, tier=tier, ok=False, error_type=NOT_ASKED)
            outcome.completed_at = time.time()
            if journal is not None:
                journal.add(outcome)
            self.metrics.row(outcome.tier, outcome.ok)
            return outcome

        # Answers already bought (cache) and identical requests (sent once) are not paid.
        asking = self.in_flight_requests
        split = split_rows(keys, await self.reuse.lookup(keys), asking)
        run, follow, leader = split.run, split.follow, split.leader
        outcomes: list[RowOutcome | None] = [None] * len(rows)
        for i, hit in split.cached.items():
            outcomes[i] = self.reuse.cached(rows[i], hit)
            outcomes[i].completed_at = time.time()  # type: ignore[union-attr]

        async def follow_one(i: int, fut: asyncio.Future[RowOutcome]) -> tuple[RowOutcome, bool]:
            leading = await InFlight.follow(fut)
            if leading is None:  # the other unit's call failed: ask it here after all
                return await one(i, *rows[i]), True
            return self.reuse.duplicate(rows[i][0], leading), False

        # Every row runs to its end even when one raises (an actor it needs was lost):
        # the answers of the others reach the journal before the unit fails.
        led, trailed = await asyncio.gather(
            asyncio.gather(
                *(asking.lead(keys[i], one(i, *rows[i])) for i in run), return_exceptions=True
            ),
            asyncio.gather(*(follow_one(i, f) for i, f in follow.items()), return_exceptions=True),
        )
        for x in (*led, *trailed):
            if isinstance(x, BaseException):
                raise x
        done = [o for o in led if isinstance(o, RowOutcome)]
        followed = [o for o in trailed if not isinstance(o, BaseException)]
        called = set(run)
        for i, o in zip(run, done, strict=True):
            outcomes[i] = o
        for i, (o, asked) in zip(follow, followed, strict=True):
            outcomes[i] = o
            if asked:
                called.add(i)
        for i, key in enumerate(keys):
            if outcomes[i] is None and key is not None:
                leading = outcomes[leader[key]]
                assert leading is not None
                outcomes[i] = self.reuse.duplicate(rows[i][0], leading)
        final = [o for o in outcomes if o is not None]
        assert len(final) == len(rows)
        for i, o in enumerate(final):
            if i not in called:
                self.metrics.row(o.tier, o.ok)  # answered without a call: done all the same
        self.reuse.remember([keys[i] for i in run], done)
        return final

    def row_costs(self, outcomes: Sequence[RowOutcome]) -> list[float]:
        return row_costs(outcomes, self.prices)

    def stop(self, grace_s: float) -> None:
        """Start no more rows; cancel those in flight after `grace_s` (see `RowGate`)."""
        self.gate.request(grace_s)

    async def _flush_cache(self, unit: Unit | None, *, due_only: bool = False) -> None:
        """The answers waiting for the response cache: those due (after a unit, see
        `ResponseCache.flush`), or all of them (a stop, the worker's end)."""
        try:
            await self.reuse.flush(due_only=due_only)
        except TierlineError as exc:
            where = f"for unit {unit.index}" if unit is not None else "at the worker's end"
            log.warning("response cache not written %s: %s", where, exc)

    async def _take_back(
        self, journal: UnitJournal, todo: pl.DataFrame
    ) -> tuple[list[RowOutcome], pl.DataFrame]:
        """Rows an earlier, interrupted run of this unit was answered for: taken from its
        journal at $0 now (they were paid then), and the rows still to ask."""
        earlier = await asyncio.to_thread(journal.read)
        if not earlier:
            return [], todo
        rows = list(todo.select(ID, TEXT, TIER, SENSITIVE).iter_rows())
        ids = [str(r[0]) for r in rows]
        done, ask = take_back(ids, self.reuse.keys(rows), earlier)
        for o in done.values():
            self.metrics.row(o.tier, o.ok)
        log.info("unit %s: %d answers taken back from its journal", journal.unit, len(done))
        return list(done.values()), todo[ask]

    async def process(self, unit: Unit, previous: UnitCommit | None = None) -> UnitReport:
        """Do a unit; with `previous` (its committed state), only retry its retryable rows
        and write the next generation of its files. Several units may run at once on one
        runner (they share its in-flight bound)."""
        table = await asyncio.to_thread(read_unit, self.input, unit, unit_columns(self.spec))
        # Per-unit work runs in a thread (polars and the tokenizers let go of the GIL):
        # in the loop, each unit's 50-100 ms held up every call the others had in flight.
        todo, early = await asyncio.to_thread(self.prepare, table, unit.index)
        kept: tuple[pa.Table, pa.Table, pa.Table] | None = None
        if previous is not None:
            old_results, old_costs, old_errors = await asyncio.to_thread(
                read_commit, self.out, previous, results_schema(self.kind)
            )
            retry = old_errors.filter(pc.field("retryable"))["id"].to_pylist()
            todo = todo.filter(pl.col("id").is_in(retry))
            done = set(todo["id"].to_list())
            keep = [i not in done for i in old_errors["id"].to_pylist()]
            kept = (old_results, old_costs, old_errors.filter(pa.array(keep, pa.bool_())))
            early = []
        journal = UnitJournal(
            JobFolder(self.out),
            unit.index,
            self.row_costs,
            every_rows=self.spec.run.journal_every_rows,
            every_s=self.spec.run.journal_every_s,
        )
        recovered, todo = await self._take_back(journal, todo)
        async with journal:
            outcomes = early + recovered + await self.call_all(todo, journal)
        if self.gate.stopping:
            # Stopped: what was answered is in the journal; the unit is left uncommitted.
            self.metrics.unit_rows -= sum(o.error_type != NOT_ASKED for o in outcomes)
            await self._flush_cache(unit)
            return UnitReport(unit.index, len(outcomes), 0, 0, 0, 0.0, {}, stopped=True)
        for o in early:
            self.metrics.row(o.tier, False)
        results, costs, errors, added, figures = await asyncio.to_thread(
            self._account, unit.index, outcomes, kept
        )
        await self._flush_cache(unit, due_only=True)
        if self.before_commit is not None:
            await self.before_commit()
        tables = (results, costs, errors)
        await asyncio.to_thread(
            write_unit, self.out, self.job_id, unit, tables, figures, previous, len(recovered)
        )
        self.metrics.committed(added)
        try:  # the answers are in the committed files now; one left (a crash now, an
            # error) is cleared at the next run's start (`journal.clear_settled`)
            await asyncio.to_thread(journal.clear)
        except TierlineError as exc:
            log.warning("journal of unit %s not cleared: %s", unit.index, exc)
        self.metrics.unit_rows -= len(outcomes)  # the unit's rows are now in its report
        return UnitReport(
            unit=unit.index,
            rows=len(outcomes),
            rows_ok=added.rows_ok,
            rows_error=added.rows_error,
            calls=added.calls,
            cost_usd=added.cost_usd,
            tiers={tier: t.rows for tier, t in added.by_tier.items()},
        )

    def _account(
        self,
        unit: int,
        outcomes: list[RowOutcome],
        kept: tuple[pa.Table, pa.Table, pa.Table] | None,
    ) -> tuple[pa.Table, pa.Table, pa.Table, UnitFigures, UnitFigures]:
        """The unit's three tables (with what an earlier generation kept), the figures
        this run adds and the unit's figures."""
        results, costs, errors = unit_tables(unit, outcomes, self.prices, self.kind)
        added = self._figures(results, costs, errors)
        if kept is None:
            return results, costs, errors, added, added
        results = pa.concat_tables([kept[0], results])
        costs = pa.concat_tables([kept[1], costs])
        errors = pa.concat_tables([kept[2], errors])
        return results, costs, errors, added, self._figures(results, costs, errors)

    def _figures(self, results: pa.Table, costs: pa.Table, errors: pa.Table) -> UnitFigures:
        frames = [pl.DataFrame(pl.from_arrow(t)) for t in (results, costs, errors)]
        return unit_figures(*frames, prices=self.prices)
