"""A simulated agent fleet that emits real OpenTelemetry traces, with labeled injected regressions.

Three agents (`support-agent`, `ops-agent`, `finance-agent`) work a shared, bounded pool of
tickets, orders, invoices, customers and accounts, so objects recur across workflows and
agents. Every workflow is one trace built with the opentelemetry-sdk; what one looks like (an
`invoke_agent` root named after the flow, LLM calls, tool calls with retries, guardrails, human
reviews, actions with undo descriptors) lives in `flightrec.demo.fleet_flows`.

Output is deterministic for a seed and a start time: ids come from a seeded `IdGenerator` and
every span gets explicit timestamps from a simulated clock. Workflow k starts in its slot
[start + k * spacing, start + k * spacing + 2/3 spacing); one that would still be running at the
end of the window, start + workflows * spacing, is moved earlier as a whole so that every span of
the run lies inside [start, start + workflows * spacing] (unless it is longer than the window).

Injections, each from workflow `regression_at` on (default workflows // 2), each on one agent
(`fleet_catalog.INJECTION_AGENTS`), listed in `FleetReport.injections`:

- `version` (the default when `inject` is empty): support-agent switches model and prompt; its
  error, override and guardrail-block rates rise.
- `loop`: ~30% of ops-agent's workflows call their first tool 9-15 times with the same arguments.
- `cost`: finance-agent's LLM calls carry 8x the input tokens; no version change.
- `drift`: ops-agent's span durations (root included) and error rate climb linearly, x1 -> x3 and
  2% -> 20%, from `regression_at` to the last workflow; no version change.
- `outlier`: 5-10 support-agent traces with 60+ spans, ~30 distinct tools, swelling prompts,
  minutes of tool calls and 3-5 guardrail blocks.

`inject` lists the kinds to make (so `["loop"]` is a loop without the version regression);
`no_regression` is a clean control run with no injection at all. Workflows before
`regression_at` are identical to the clean run's, and which agent and flow runs at each index
never depends on the injections.

With `records_url`, every `auto` action is really performed on the demo system of record
(`flightrec records`) before its span ends: the span records a failed call as an ERROR, and its
undo descriptor carries the ids and previous values the service answered. `observe` and `assist`
actions are never performed. With `check_controls`, the kill switches are asked before each
action; a refused action is not performed and its span says `flightrec.action.status=blocked`.

`build_workflow_spans` yields the finished spans in memory (`FleetSimulation` too, and keeps the
report); `run_fleet` sends them to a collector with the real OTLP exporter (HTTP or gRPC).
"""

from __future__ import annotations

import importlib
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal, get_args

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from pydantic import BaseModel, Field, model_validator

from flightrec.demo import fleet_catalog as cat
from flightrec.demo.fleet_flows import FLOWS, MS, NO_TWIST, SECOND, Controls, Records, Run, Twist, World

EXPORT_BATCH_SIZE = 512
QUEUE_SIZE = 8192
OBJECT_TYPES = ("ticket", "order", "invoice", "customer", "account")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_WEIGHTS = [profile.weight for profile in cat.AGENTS]

InjectionKind = Literal["version", "loop", "cost", "drift", "outlier"]
INJECTION_KINDS: tuple[str, ...] = get_args(InjectionKind)
PER_TRACE_KINDS = frozenset({"loop", "outlier"})


class FleetConfig(BaseModel):
    """Settings of one simulated fleet run."""

    endpoint: str = Field(
        "http://127.0.0.1:4318",
        description="OTLP base URL: HTTP posts to {endpoint}/v1/traces; gRPC takes http://host:port (default :4317)",
    )
    protocol: Literal["http", "grpc"] = Field("http", description="OTLP transport: proto-http or proto-grpc")
    workflows: int = Field(200, ge=1, description="How many workflows (one trace each) to run")
    seed: int = Field(7, description="RNG seed; the same seed and start give identical spans")
    regression_at: int | None = Field(
        None, ge=0, description="First workflow the injections change; default workflows // 2"
    )
    no_regression: bool = Field(False, description="Clean control run: no injection at all")
    inject: list[InjectionKind] = Field(
        default_factory=list,
        description="Injections to make from regression_at: version, loop, cost, drift, outlier; "
        "empty means the version regression alone",
    )
    spacing_s: float | None = Field(
        None, gt=0, description=f"Simulated seconds between workflow starts; default {cat.WORKFLOW_SPACING_S}"
    )
    ingest_token: str | None = Field(None, description="Sent as 'Authorization: Bearer <token>'")
    records_url: str | None = Field(
        None, description="Demo system of record: auto actions are performed there; base URL of undo targets"
    )
    check_controls: bool = Field(False, description="Ask the kill switches (flightrec.sdk) before each action")
    api_url: str | None = Field(None, description="API base URL for the kill switches; default: the HTTP endpoint")
    pace_s: float = Field(0.0, ge=0, description="Real seconds to wait between workflows (a live fleet)")
    start: datetime | None = Field(
        None, description="Simulated clock start (UTC); default now - workflows * spacing"
    )

    @model_validator(mode="after")
    def _grpc_default_endpoint(self) -> FleetConfig:
        """Point gRPC at port 4317 unless an endpoint was given explicitly."""
        if self.protocol == "grpc" and "endpoint" not in self.model_fields_set:
            self.endpoint = cat.DEFAULT_GRPC_ENDPOINT
        return self

    @model_validator(mode="after")
    def _one_meaning_of_clean(self) -> FleetConfig:
        """Refuse a clean run that asks for injections; list each kind once."""
        if self.no_regression and self.inject:
            raise ValueError("no_regression is a clean run without any injection; drop it or drop inject")
        self.inject = list(dict.fromkeys(self.inject))
        return self

    @property
    def spacing(self) -> float:
        """Simulated seconds between workflow starts."""
        return self.spacing_s if self.spacing_s is not None else cat.WORKFLOW_SPACING_S


class Injection(BaseModel):
    """One labeled injected regression of a run."""

    kind: InjectionKind
    agent: str
    start_index: int = Field(description="First workflow index the injection may change")
    description: str
    workflows: int = Field(0, description="How many workflows it changed")
    trace_ids: list[str] = Field(
        default_factory=list, description="The changed traces (32 hex digits), for the per-trace kinds loop and outlier"
    )


class FleetReport(BaseModel):
    """What a fleet run produced."""

    workflows: int
    spans: int
    traces: int
    agents: list[str]
    example_objects: list[str]
    regression_agent: str | None = Field(description="The agent of the version regression, if one was injected")
    regression_at: int | None = Field(description="First workflow the injections change; None for a clean run")
    refused: int = Field(0, description="Workflows not started because the agent was paused or draining")
    injections: list[Injection] = Field(default_factory=list, description="The injected regressions, labeled")


class SeededIdGenerator(IdGenerator):
    """Trace and span ids drawn from a seeded RNG, reseeded per workflow."""

    def __init__(self) -> None:
        self._rng = random.Random(0)

    def reseed(self, seed: str) -> None:
        """Restart the id sequence from `seed`."""
        self._rng.seed(seed)

    def generate_span_id(self) -> int:
        """Return a non-zero 64-bit span id."""
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        """Return a non-zero 128-bit trace id."""
        return self._rng.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        """Ids are uniformly random (seeded), so sampling may rely on them."""
        return True


def injected_kinds(config: FleetConfig) -> list[str]:
    """The injections a config asks for: none when clean, the version regression when none is named."""
    if config.no_regression:
        return []
    return list(config.inject) or ["version"]


def regression_index(config: FleetConfig) -> int | None:
    """The workflow index from which the injections apply, or None for a clean run."""
    if not injected_kinds(config):
        return None
    return config.regression_at if config.regression_at is not None else config.workflows // 2


def _pick_agent(rng: random.Random) -> cat.AgentProfile:
    """The first draw of every workflow: which agent runs it."""
    return rng.choices(cat.AGENTS, _WEIGHTS)[0]


def _describe(kind: str, agent: str, outliers: int) -> str:
    """One line on what an injection of `kind` does to `agent`, in numbers."""
    base = next(profile for profile in cat.AGENTS if profile.name == agent).behaviour
    if kind == "version":
        new = cat.REGRESSED_BEHAVIOUR
        return (
            f"{agent}: model {base.model} -> {new.model} and prompt {base.prompt_version} -> {new.prompt_version}; "
            f"error rate {base.error_rate:.0%} -> {new.error_rate:.0%}, human override/reject "
            f"{base.override_rate:.0%} -> {new.override_rate:.0%}, guardrail block "
            f"{base.guardrail_weights[2]:.0%} -> {new.guardrail_weights[2]:.0%}"
        )
    if kind == "loop":
        low, high = cat.LOOP_REPEATS
        return (
            f"{agent}: {cat.LOOP_SHARE:.0%} of its workflows call their first tool {low + 1}-{high + 1} times with "
            "the same arguments (a new call id each time, no retry attribute, no error)"
        )
    if kind == "cost":
        return f"{agent}: {cat.COST_TOKEN_FACTOR}x input tokens on every LLM call; no model or prompt change"
    if kind == "drift":
        low, high = cat.DRIFT_SLOWDOWN
        return (
            f"{agent}: span durations x{low:g} -> x{high:g} and error rate {base.error_rate:.0%} -> "
            f"{cat.DRIFT_ERROR_RATE:.0%}, rising linearly to the last workflow; no model or prompt change"
        )
    low, high = cat.OUTLIER_TOOL_CALLS
    return (
        f"{agent}: {outliers} traces with {low}-{high} extra calls of distinct "
        f"tools (60+ spans), swelling prompts, {cat.OUTLIER_TOOL_MS[0] // 1000}-{cat.OUTLIER_TOOL_MS[1] // 1000} s "
        f"per call, then {cat.OUTLIER_BLOCKS[0]}-{cat.OUTLIER_BLOCKS[1]} guardrail blocks"
    )


class _Plan:
    """Which injection bends which workflow, and what each one changed."""

    def __init__(self, config: FleetConfig) -> None:
        self.seed, self.workflows = config.seed, config.workflows
        self.kinds = injected_kinds(config)
        start = regression_index(config)
        self.start = start if start is not None and start < config.workflows else None
        self.by_agent: dict[str, list[str]] = defaultdict(list)
        for kind in self.kinds:
            self.by_agent[cat.INJECTION_AGENTS[kind]].append(kind)
        self.outliers = self._pick_outliers() if "outlier" in self.kinds and self.start is not None else set()
        self.changed: Counter[str] = Counter()
        self.trace_ids: dict[str, list[str]] = defaultdict(list)

    def _pick_outliers(self) -> set[int]:
        agent = cat.INJECTION_AGENTS["outlier"]
        assert self.start is not None
        candidates = [
            index
            for index in range(self.start, self.workflows)
            if _pick_agent(random.Random(f"{self.seed}:{index}")).name == agent
        ]
        pick = random.Random(f"outlier:{self.seed}")
        count = min(len(candidates), pick.randint(*cat.OUTLIER_TRACES))
        return set(pick.sample(candidates, count))

    def twist(self, profile: cat.AgentProfile, index: int) -> Twist:
        """How the injections bend workflow `index`, run by `profile`."""
        kinds = self.by_agent.get(profile.name)
        if not kinds or self.start is None or index < self.start:
            return NO_TWIST
        bend: dict[str, object] = {}
        if "version" in kinds:
            bend["regressed"] = True
        if "loop" in kinds:
            pick = random.Random(f"loop:{self.seed}:{index}")
            if pick.random() < cat.LOOP_SHARE:
                bend["loop_calls"] = pick.randint(*cat.LOOP_REPEATS)
        if "cost" in kinds:
            bend["token_factor"] = cat.COST_TOKEN_FACTOR
        if "drift" in kinds:
            progress = (index - self.start + 1) / (self.workflows - self.start)
            low, high = cat.DRIFT_SLOWDOWN
            base = profile.behaviour.error_rate
            bend["slowdown"] = low + (high - low) * progress
            bend["error_rate"] = base + (cat.DRIFT_ERROR_RATE - base) * progress
        if index in self.outliers:
            bend["outlier"] = True
        if not bend:
            return NO_TWIST
        return Twist(side=random.Random(f"side:{self.seed}:{index}"), **bend)  # type: ignore[arg-type]

    def record(self, run: Run) -> None:
        """Count what the injections changed in a finished run."""
        twist = run.twist
        changed = {"version": twist.regressed, "cost": twist.token_factor != 1, "drift": twist.error_rate is not None}
        for kind in [kind for kind, hit in changed.items() if hit] + sorted(run.applied):
            self.changed[kind] += 1
            if kind in PER_TRACE_KINDS:
                self.trace_ids[kind].append(f"{run.trace_id:032x}")

    def injections(self) -> list[Injection]:
        """The labeled injections of the run (none if it ended before `regression_at`)."""
        if self.start is None:
            return []
        return [
            Injection(
                kind=kind,  # type: ignore[arg-type]
                agent=cat.INJECTION_AGENTS[kind],
                start_index=self.start,
                description=_describe(kind, cat.INJECTION_AGENTS[kind], len(self.outliers)),
                workflows=self.changed[kind],
                trace_ids=self.trace_ids[kind],
            )
            for kind in INJECTION_KINDS
            if kind in self.kinds
        ]


def _start_ns(config: FleetConfig) -> int:
    start = config.start or datetime.now(timezone.utc) - timedelta(seconds=config.workflows * config.spacing)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return (start - _EPOCH) // timedelta(microseconds=1) * 1_000


def _shifted(span: ReadableSpan, offset_ns: int) -> ReadableSpan:
    """The same span, `offset_ns` later (earlier when negative), events included."""
    events = [Event(event.name, event.attributes, event.timestamp + offset_ns) for event in span.events]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=(span.start_time or 0) + offset_ns,
        end_time=(span.end_time or 0) + offset_ns,
        instrumentation_scope=span.instrumentation_scope,
    )


class _Hold(SpanProcessor):
    """Holds one workflow's finished spans until the fleet releases them, moved in time if need be."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.held: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Pass the start on."""
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the span until `release`."""
        self.held.append(span)

    def release(self, offset_ns: int = 0) -> None:
        """Hand the held spans on, `offset_ns` later."""
        for span in self.held:
            self.inner.on_end(_shifted(span, offset_ns) if offset_ns else span)
        self.held.clear()

    def shutdown(self) -> None:
        """Shut the inner processor down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the inner processor."""
        return self.inner.force_flush(timeout_millis)


class _Fleet:
    """The agents' tracer providers plus the shared world; runs workflows one by one."""

    def __init__(self, config: FleetConfig, processor: Callable[[], SpanProcessor]) -> None:
        self.config = config
        self.plan = _Plan(config)
        self.start_ns = _start_ns(config)
        self.spacing_ns = round(config.spacing * SECOND)
        self.end_ns = self.start_ns + config.workflows * self.spacing_ns
        self.jitter_ms = max(1, self.spacing_ns * 2 // 3 // MS)
        self.world = World(config.workflows, random.Random(f"world:{config.seed}"))
        self.ids = SeededIdGenerator()
        self.records_url = (config.records_url or cat.DEFAULT_RECORDS_URL).rstrip("/")
        self.controls: Controls | None = None
        if config.check_controls:
            sdk = importlib.import_module("flightrec.sdk")
            api_url = config.api_url or (config.endpoint if config.protocol == "http" else cat.DEFAULT_API_URL)
            self.controls = sdk.ControlClient(api_url=api_url.removesuffix("/v1/traces"))
        self.records = Records(self.records_url) if config.records_url else None
        self.providers: dict[str, TracerProvider] = {}
        self.tracers: dict[str, Tracer] = {}
        self.holds: dict[str, _Hold] = {}
        for profile in cat.AGENTS:
            resource = Resource.create(
                {
                    "service.name": profile.name,
                    "service.version": profile.version,
                    "deployment.environment": cat.ENVIRONMENT,
                }
            )
            provider = TracerProvider(
                sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False, id_generator=self.ids
            )
            self.holds[profile.name] = _Hold(processor())
            provider.add_span_processor(self.holds[profile.name])
            self.providers[profile.name] = provider
            self.tracers[profile.name] = provider.get_tracer(cat.SCOPE_NAME, cat.SCOPE_VERSION)
        self.ran: Counter[str] = Counter()
        self.spans = 0
        self.refused = 0

    def _offset(self, run: Run) -> int:
        """How far to move a finished workflow so it ends inside the window (0: it does already)."""
        if run.root_end <= self.end_ns:
            return 0
        return max(self.end_ns - run.root_end, self.start_ns - run.root_start)

    def run(self) -> Iterator[tuple[str, int]]:
        """Emit the workflows in order; yield (agent, span count) after each."""
        seed = self.config.seed
        for index in range(self.config.workflows):
            rng = random.Random(f"{seed}:{index}")
            self.ids.reseed(f"ids:{seed}:{index}")
            profile = _pick_agent(rng)
            names, flow_weights = zip(*profile.flows)
            flow = rng.choices(names, flow_weights)[0]
            if index and self.config.pace_s:
                time.sleep(self.config.pace_s)
            if self.controls and not self.controls.check(profile.name, flow, starting=True).allowed:
                self.refused += 1  # paused or draining: no new work
                yield profile.name, 0
                continue
            start = self.start_ns + index * self.spacing_ns + rng.randrange(self.jitter_ms) * MS
            twist = self.plan.twist(profile, index)
            behaviour = cat.REGRESSED_BEHAVIOUR if twist.regressed else profile.behaviour
            run = Run(self.tracers[profile.name], rng, profile, behaviour, self.records_url, start,
                      self.records, self.controls, twist)
            FLOWS[flow](run, self.world)
            self.holds[profile.name].release(self._offset(run))
            self.plan.record(run)
            self.world.touched.update(run.objects)
            self.ran[profile.name] += 1
            self.spans += run.spans
            yield profile.name, run.spans

    def report(self) -> FleetReport:
        """Summarize what ran so far."""
        start = self.plan.start
        hottest: dict[str, str] = {}
        for ref, _count in sorted(self.world.touched.items(), key=lambda item: (-item[1], item[0])):
            hottest.setdefault(ref.split(":", 1)[0], ref)
        ran = sum(self.ran.values())
        return FleetReport(
            workflows=ran,
            spans=self.spans,
            traces=ran,
            agents=[profile.name for profile in cat.AGENTS if self.ran[profile.name]],
            example_objects=[hottest[kind] for kind in OBJECT_TYPES if kind in hottest],
            regression_agent=cat.REGRESSION_AGENT if start is not None and "version" in self.plan.kinds else None,
            regression_at=start,
            refused=self.refused,
            injections=self.plan.injections(),
        )

    def force_flush(self) -> None:
        """Flush every agent's span processor."""
        for provider in self.providers.values():
            provider.force_flush()

    def shutdown(self) -> None:
        """Shut every agent's tracer provider down and close the clients."""
        for provider in self.providers.values():
            provider.shutdown()
        if self.records:
            self.records.close()
        close = getattr(self.controls, "close", None)
        if callable(close):
            close()


class FleetSimulation:
    """The fleet in memory: iterate for each workflow's finished SDK spans (children first).

    `report` (with the labeled `injections` and their trace ids) is set once the iteration ended
    or was abandoned. Deterministic for a seed and start.
    """

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.report: FleetReport | None = None

    def __iter__(self) -> Iterator[list[ReadableSpan]]:
        memory = InMemorySpanExporter()
        fleet = _Fleet(self.config, lambda: SimpleSpanProcessor(memory))
        try:
            for _agent, _count in fleet.run():
                yield list(memory.get_finished_spans())
                memory.clear()
        finally:
            self.report = fleet.report()
            fleet.shutdown()


def build_workflow_spans(config: FleetConfig) -> Iterator[list[ReadableSpan]]:
    """Yield, per workflow, the finished SDK spans (children first), deterministic for a seed and start."""
    yield from FleetSimulation(config)


class _Delivery:
    """Thread-safe tally of export outcomes shared by the agents' exporters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def record(self, count: int, ok: bool) -> None:
        """Count one export call's spans as delivered or failed."""
        with self._lock:
            if ok:
                self.delivered += count
            else:
                self.failed += count


class _CountingExporter(SpanExporter):
    """Wraps an OTLP exporter: tallies outcomes and stops trying after the first failure."""

    def __init__(self, inner: SpanExporter, delivery: _Delivery) -> None:
        self._inner = inner
        self._delivery = delivery

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter unless an earlier export already failed."""
        result = SpanExportResult.FAILURE
        if not self._delivery.failed:
            result = self._inner.export(spans)
        self._delivery.record(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return self._inner.force_flush(timeout_millis)


class _ErrorLog(logging.Handler):
    """Keeps the exporters' error log lines so a failure can be reported in one exception."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Remember the message."""
        self.messages.append(record.getMessage())


def _otlp_exporter(config: FleetConfig) -> tuple[SpanExporter, str]:
    """Return the real OTLP exporter for the configured protocol, and the URL it sends to."""
    endpoint = config.endpoint if "://" in config.endpoint else f"http://{config.endpoint}"
    token = config.ingest_token
    if config.protocol == "grpc":
        metadata = {"authorization": f"Bearer {token}"} if token else None
        return GrpcSpanExporter(endpoint=endpoint, headers=metadata), endpoint
    url = endpoint.rstrip("/")
    url = url if url.endswith("/v1/traces") else f"{url}/v1/traces"
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return HttpSpanExporter(endpoint=url, headers=headers, compression=Compression.Gzip), url


def run_fleet(config: FleetConfig, progress: Callable[[int], None] | None = None) -> FleetReport:
    """Send every workflow to the collector with the real OTLP exporter; raise RuntimeError if export failed.

    Calls `progress(1)` per workflow. Each agent exports through its own `BatchSpanProcessor`;
    a processor is flushed whenever half its queue is pending, so no span is ever dropped.
    After the first failed export the run stops early.
    """
    delivery, errors = _Delivery(), _ErrorLog()
    urls: list[str] = []

    def processor() -> SpanProcessor:
        exporter, url = _otlp_exporter(config)
        urls.append(url)
        return BatchSpanProcessor(
            _CountingExporter(exporter, delivery),
            max_queue_size=QUEUE_SIZE,
            max_export_batch_size=EXPORT_BATCH_SIZE,
            schedule_delay_millis=500,
        )

    exporter_logger = logging.getLogger("opentelemetry.exporter")
    exporter_logger.addHandler(errors)
    fleet = _Fleet(config, processor)
    pending: Counter[str] = Counter()
    try:
        for agent, count in fleet.run():
            pending[agent] += count
            if pending[agent] >= QUEUE_SIZE // 2:
                fleet.providers[agent].force_flush()
                pending[agent] = 0
            if progress:
                progress(1)
            if delivery.failed:
                break
        fleet.force_flush()
    finally:
        fleet.shutdown()
        exporter_logger.removeHandler(errors)
    if delivery.failed or delivery.delivered != fleet.spans:
        detail = errors.messages[0] if errors.messages else "spans were lost before export"
        hint = "; is a collector listening there (flightrec serve)?" if not delivery.delivered else ""
        raise RuntimeError(
            f"OTLP/{config.protocol} export to {urls[0]} failed: {delivery.delivered} of {fleet.spans} spans "
            f"delivered ({detail}){hint}"
        )
    return fleet.report()
