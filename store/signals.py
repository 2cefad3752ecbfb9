"""Statements detectors read: per-run features, rollups, loops, costs; and the alerts they keep."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel

from flightrec.store.engine import Engine

# One row per run (trace): the features every detector works from. The flow is the run's workflow
# name (gen_ai.workflow.name, OpenLLMetry's traceloop.workflow.name) where a span names one, else
# the root span's name. cost_usd sums known costs only; unpriced_calls counts the LLM calls
# without a price (CostKnown = 0), whose cost the sum misses.
RUN_FEATURES = """
SELECT
    TraceId AS trace_id,
    anyIf(Agent, ParentSpanId = '') AS agent,
    if(anyIf(workflow, workflow != '') != '', anyIf(workflow, workflow != ''), anyIf(SpanName, ParentSpanId = '')) AS flow,
    anyIf(Model, ParentSpanId = '') AS model,
    anyIf(PromptVersion, ParentSpanId = '') AS prompt_version,
    anyIf(AgentVersion, ParentSpanId = '') AS agent_version,
    toUnixTimestamp64Milli(min(Timestamp)) AS start_ms,
    maxIf(Duration, ParentSpanId = '') / 1e6 AS duration_ms,
    count() AS spans,
    countIf(Operation = 'tool') AS tool_calls,
    uniqExactIf(Tool, Operation = 'tool') AS distinct_tools,
    sum(InputTokens) AS tokens_in,
    sum(OutputTokens) AS tokens_out,
    sum(CostUsd) AS cost_usd,
    countIf(CostKnown = 0) AS unpriced_calls,
    countIf(StatusCode = 'Error') AS errors,
    countIf(StatusCode = 'Error' AND ParentSpanId = '') > 0 AS failed,
    countIf(SpanAttributes['flightrec.retry.attempt'] != '') AS retries,
    countIf(GuardrailVerdict = 'block') AS blocks,
    countIf(HumanDecision = 'override') AS overrides,
    countIf(HumanDecision = 'reject') AS rejects,
    countIf(Operation = 'human') AS human_decisions,
    countIf(Operation = 'action' AND Mode = 'observe') AS observe_actions,
    countIf(Operation = 'action' AND Mode = 'assist') AS assist_actions,
    countIf(Operation = 'action' AND Mode NOT IN ('observe', 'assist')) AS auto_actions,
    anyIf(Objects[1], ParentSpanId = '') AS object
FROM (SELECT *, CostUsd, CostKnown, Flow AS workflow
      FROM {db}.otel_traces
      WHERE Timestamp >= fromUnixTimestamp64Milli({since_ms:Int64}) AND Timestamp < fromUnixTimestamp64Milli({until_ms:Int64})
      LIMIT 1 BY TraceId, SpanId)
GROUP BY TraceId
HAVING countIf(ParentSpanId = '') > 0
ORDER BY start_ms
"""

# chDB answers an empty result without column names; these are the names RUN_FEATURES selects.
RUN_FEATURE_COLUMNS = tuple(
    line.rsplit(" AS ", 1)[1].rstrip(",").strip()
    for line in RUN_FEATURES.split("FROM (", 1)[0].splitlines()
    if " AS " in line
)

ROLLUPS = """
SELECT agent, flow, model, prompt_version,
    intDiv(toInt64(start_ms), {bucket_s:UInt32} * 1000) * {bucket_s:UInt32} * 1000 AS bucket_ms,
    count() AS runs,
    avg(failed) AS error_rate,
    quantile(0.5)(duration_ms) AS p50_ms,
    quantile(0.95)(duration_ms) AS p95_ms,
    sum(tokens_in + tokens_out) AS tokens,
    sum(cost_usd) AS cost_usd,
    sum(unpriced_calls) AS unpriced_calls,
    sum(blocks) AS guardrail_blocks,
    avg(overrides > 0) AS override_rate,
    avg(rejects > 0) AS reject_rate,
    sum(tool_calls) AS tool_calls,
    sum(human_decisions) AS human_decisions,
    sum(observe_actions) AS observe_actions,
    sum(assist_actions) AS assist_actions,
    sum(auto_actions) AS auto_actions
FROM ({runs})
GROUP BY agent, flow, model, prompt_version, bucket_ms
ORDER BY bucket_ms, agent, flow
"""


class RunFeatures(BaseModel):
    """Per-run features, column by column (lists of equal length), from :data:`RUN_FEATURES`."""

    columns: dict[str, list]

    def __len__(self) -> int:
        return len(self.columns.get("trace_id", []))

    def column(self, name: str) -> list:
        return self.columns[name]


class LoopRow(BaseModel):
    trace_id: str
    agent: str
    tool: str
    arguments: str
    calls: int
    object: str


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class SignalsRepository:
    """What detectors read, for a time window [since, until)."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def run_features(self, *, since: datetime, until: datetime) -> RunFeatures:
        """One row per run that has a root span in [since, until); every column present even when empty."""
        columns = self.engine.query_columns(
            "run_features", RUN_FEATURES.replace("{db}", self.db), {"since_ms": _ms(since), "until_ms": _ms(until)}
        )
        return RunFeatures(columns=columns or {name: [] for name in RUN_FEATURE_COLUMNS})

    def rollups(self, *, since: datetime, until: datetime, bucket_s: int) -> dict[str, list]:
        """Golden signals per agent x flow x model x prompt version x time bucket, column by column."""
        runs = RUN_FEATURES.replace("{db}", self.db).replace("ORDER BY start_ms", "")
        return self.engine.query_columns(
            "rollups", ROLLUPS.replace("{runs}", runs),
            {"since_ms": _ms(since), "until_ms": _ms(until), "bucket_s": bucket_s},
        )

    def repeated_tool_calls(self, *, since: datetime, until: datetime, min_calls: int) -> list[LoopRow]:
        """Tool calls repeated with identical arguments within one run (retries excluded)."""
        rows = self.engine.query(
            "repeated_tool_calls",
            f"SELECT TraceId, any(Agent), Tool, SpanAttributes['gen_ai.tool.call.arguments'] AS arguments, count(), "
            f"any(Objects[1]) FROM {self.db}.otel_traces "
            "WHERE Operation = 'tool' AND SpanAttributes['flightrec.retry.attempt'] = '' "
            "AND Timestamp >= fromUnixTimestamp64Milli({since_ms:Int64}) AND Timestamp < fromUnixTimestamp64Milli({until_ms:Int64}) "
            "GROUP BY TraceId, Tool, arguments HAVING count() >= {min_calls:UInt32} ORDER BY count() DESC LIMIT 1000",
            {"since_ms": _ms(since), "until_ms": _ms(until), "min_calls": min_calls},
        )
        return [LoopRow(trace_id=t, agent=a, tool=tool, arguments=args, calls=c, object=o) for t, a, tool, args, c, o in rows]

    def object_costs(self, *, since: datetime, until: datetime, min_usd: float) -> list[tuple[str, float, int, int]]:
        """(object, USD, runs, unpriced calls) for objects whose runs cost at least ``min_usd`` of known costs."""
        rows = self.engine.query(
            "object_costs",
            f"SELECT concat(l.ObjectType, ':', l.ObjectId) AS object, sum(t.cost) AS usd, count() AS runs, "
            f"sum(t.unpriced) AS unpriced FROM "
            f"(SELECT DISTINCT ObjectType, ObjectId, TraceId FROM {self.db}.object_links "
            "WHERE Timestamp >= fromUnixTimestamp64Milli({since_ms:Int64}) AND Timestamp < fromUnixTimestamp64Milli({until_ms:Int64})) AS l "
            f"INNER JOIN (SELECT TraceId, sum(CostUsd) AS cost, countIf(CostKnown = 0) AS unpriced FROM {self.db}.otel_traces "
            "WHERE Timestamp >= fromUnixTimestamp64Milli({since_ms:Int64}) AND Timestamp < fromUnixTimestamp64Milli({until_ms:Int64}) "
            "GROUP BY TraceId) AS t ON l.TraceId = t.TraceId "
            "GROUP BY object HAVING usd >= {min_usd:Float64} ORDER BY usd DESC LIMIT 100",
            {"since_ms": _ms(since), "until_ms": _ms(until), "min_usd": min_usd},
        )
        return [(obj, float(usd), int(runs), int(unpriced)) for obj, usd, runs, unpriced in rows]

    def latest_time(self) -> datetime | None:
        """The newest span's start: passes over simulated or replayed data end there."""
        rows = self.engine.query("latest_time", f"SELECT toUnixTimestamp64Milli(max(Timestamp)), count() FROM {self.db}.otel_traces")
        return datetime.fromtimestamp(rows[0][0] / 1000, tz=timezone.utc) if rows and rows[0][1] else None


class AlertsRepository:
    """Alerts as versioned JSON documents; the newest version per dedup key is the alert."""

    def __init__(self, engine: Engine, db: str) -> None:
        self.engine, self.db = engine, db

    def save(self, *, dedup_key: str, version: int, status: str, detector: str, agent: str, body: str) -> None:
        self.engine.insert(
            "save_alert", f"{self.db}.alerts",
            [[dedup_key], [version], [status], [detector], [agent], [body], [datetime.now(tz=timezone.utc)]],
            ["DedupKey", "Version", "Status", "Detector", "Agent", "Body", "UpdatedAt"],
        )

    def versions(self, *, dedup_keys: list[str]) -> dict[str, int]:
        """The newest version of each given alert, whatever its status (absent: never saved)."""
        if not dedup_keys:
            return {}
        rows = self.engine.query(
            "alert_versions",
            f"SELECT DedupKey, max(Version) FROM {self.db}.alerts WHERE DedupKey IN {{keys:Array(String)}} "
            "GROUP BY DedupKey",
            {"keys": dedup_keys},
        )
        return {key: int(version) for key, version in rows}

    def latest(self, *, status: str = "", limit: int = 1000) -> list[tuple[int, str]]:
        """(version, body) of each alert's newest version, optionally only in one status; newest first."""
        rows = self.engine.query(
            "latest_alerts",
            f"SELECT max(Version), argMax(Body, Version), argMax(Status, Version) AS status FROM {self.db}.alerts "
            "GROUP BY DedupKey HAVING ({status:String} = '' OR status = {status:String}) "
            "ORDER BY max(UpdatedAt) DESC LIMIT {limit:UInt32}",
            {"status": status, "limit": limit},
        )
        return [(int(version), body) for version, body, _ in rows]
