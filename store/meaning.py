"""The derivation's statements: install the rules' expressions, re-derive history, preview, rates.

See :mod:`flightrec.store.derive` for what is derived and how; this module runs it.
"""

from __future__ import annotations

import json
from datetime import date

from pydantic import BaseModel, Field

from flightrec.store.conventions import builtin_rules
from flightrec.store.derive import (
    attribute_keys,
    _KEY,
    LINK_COLUMNS,
    LINK_VIEW,
    RATES_DICTIONARY,
    RATES_KEY,
    DerivedColumn,
    Progress,
    compile_columns,
    field_rule_preview,
    fingerprint,
    link_rule_preview,
    links_select,
)
from flightrec.store.engine import Engine, StoreError
from flightrec.store.rules import FieldRule, LinkRule, RuleSet, RulesError
from flightrec.store.topology import mirror_on_distributed

MUTATION_SETTINGS = {"mutations_sync": 2, "max_query_size": 16 * 2**20}
DDL_SETTINGS = {"max_query_size": 16 * 2**20}  # compiled rules make long statements (the default is 256 KiB)


class DerivationState(BaseModel):
    """Which rules the engine derives with now, and which ones derived the stored history."""

    installed: str = Field(description="fingerprint of the expressions in force")
    history: str = Field(description="fingerprint of the expressions the stored rows were last derived with")
    version: int = Field(description="the link version new links carry")

    @property
    def stale(self) -> bool:
        return self.installed != self.history


class RulePreview(BaseModel):
    """What one rule does on the stored rows."""

    kind: str = Field(description="'link' or 'field'")
    origin: str
    line: int | None
    rule: dict
    spans: int = Field(description="stored spans the rule links or gives a value")
    objects: int = Field(default=0, description="distinct objects a link rule names")
    examples: list[str] = Field(default_factory=list, description="a few objects it names (link rules)")


class RateRow(BaseModel):
    """USD per token of one (provider, model) on one day; known=False: no price anywhere."""

    provider: str
    model: str
    day: date
    known: bool
    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    per_call: float = 0.0
    source: str = ""


class MeaningRepository:
    """Derived columns, the link view, history re-derivation and model rates of one database."""

    def __init__(self, engine: Engine, database: str) -> None:
        self.engine = engine
        self.db = database
        self.topology = engine.topology
        # The derived columns, the link view and the re-derive's mutations act on the spans' storage (on a
        # cluster: otel_traces_local on every shard, the view from it into object_links_local).
        self.spans = self.topology.storage_name("otel_traces")
        self.on_cluster = self.topology.on_cluster("otel_traces")
        self._claims: tuple[RuleSet, str, frozenset[str], str] | None = None

    def columns(self, rules: RuleSet, default_tenant: str) -> list[DerivedColumn]:
        return compile_columns(builtin_rules().merged(rules), default_tenant=default_tenant, database=self.db)

    def claims(self, rules: RuleSet, default_tenant: str,
               spans: list[tuple[dict[str, str], dict[str, str]]]) -> list[tuple[str, str]]:
        """The (agent, tenant) these rules derive for each (span attributes, resource attributes),
        in order, evaluated by the engine with the stored columns' own expressions: one query over
        the distinct combinations of the attributes those expressions read."""
        if self._claims is None or self._claims[0] is not rules or self._claims[1] != default_tenant:
            inline = {column.name: column.inline for column in self.columns(rules, default_tenant)}
            keys = frozenset(attribute_keys(inline["Agent"]) | attribute_keys(inline["Tenant"]))
            self._claims = (rules, default_tenant, keys, (
                f"SELECT {inline['Agent']}, {inline['Tenant']} FROM (SELECT i, "
                "mapFromArrays({sk:Array(Array(String))}[i + 1], {sv:Array(Array(String))}[i + 1]) AS SpanAttributes, "
                "mapFromArrays({rk:Array(Array(String))}[i + 1], {rv:Array(Array(String))}[i + 1]) AS ResourceAttributes "
                "FROM (SELECT arrayJoin(range({n:UInt32})) AS i)) ORDER BY i"))
        keys, sql = self._claims[2], self._claims[3]
        distinct: dict[tuple, int] = {}
        order = []
        for span, resource in spans:
            key = (tuple(sorted((k, v) for k, v in span.items() if k in keys)),
                   tuple(sorted((k, v) for k, v in resource.items() if k in keys)))
            order.append(distinct.setdefault(key, len(distinct)))
        combos = list(distinct)
        params = {"n": len(combos), "sk": [[k for k, _ in s] for s, _ in combos], "sv": [[v for _, v in s] for s, _ in combos],
                  "rk": [[k for k, _ in r] for _, r in combos], "rv": [[v for _, v in r] for _, r in combos]}
        rows = self.engine.query("span_claims", sql, params)
        return [(rows[index][0], rows[index][1]) for index in order]

    # -- state -------------------------------------------------------------------

    def state(self) -> DerivationState | None:
        rows = self.engine.query(
            "derivation_state",
            f"SELECT argMaxIf(Fingerprint, AppliedAt, Kind = 'install'), argMaxIf(Fingerprint, AppliedAt, Kind = 'history'), "
            f"maxIf(Version, Kind = 'install'), countIf(Kind = 'install') FROM {self.db}.derivations",
        )
        if not rows or not rows[0][3]:
            return None
        installed, history, version, _ = rows[0]
        return DerivationState(installed=installed, history=history, version=version)

    def _record(self, kind: str, print_: str, version: int, rules: RuleSet, spans: int = 0) -> None:
        self.engine.insert(
            "record_derivation", f"{self.db}.derivations",
            [[kind], [print_], [version], [rules.model_dump_json()], [spans]],
            ["Kind", "Fingerprint", "Version", "Rules", "Spans"],
        )

    # -- install -----------------------------------------------------------------

    def install(self, rules: RuleSet, default_tenant: str) -> DerivationState:
        """Make the engine derive with these rules from now on (metadata only, no row rewritten).

        A first install over stored rows, or a changed rule set, leaves the history marked
        stale until :meth:`rederive` runs. A change of read-time columns only (the ALIAS cost
        columns: a new release's pricing) keeps a derived history derived: no stored value changed.
        """
        columns = self.columns(rules, default_tenant)
        wanted = fingerprint(columns)
        state = self.state()
        if state is not None and state.installed == wanted and self._view_exists():
            return state
        self.validate(rules, columns)
        existing = {
            name: kind for name, kind in self.engine.query(
                "derived_columns",
                "SELECT name, default_kind FROM system.columns WHERE database = {db:String} AND table = {table:String}",
                {"db": self.db, "table": self.spans},
            )
        }
        stored_before = self._stored_derivation(columns)
        table = f"{self.db}.{self.spans} {self.on_cluster}"
        # A stored column that becomes an ALIAS (CostUsd, CostKnown) is dropped first,
        # CostKnown first: its old DEFAULT reads CostUsd.
        replaced = [c.name for c in columns if c.name in existing and (existing[c.name] in ("ALIAS", "EPHEMERAL"))
                    != (c.kind in ("ALIAS", "EPHEMERAL"))]
        for name in reversed(replaced):
            self._alter_columns("replace_derived_column", f"ALTER TABLE {table} DROP COLUMN {name}")
        # One statement for every column: each ALTER re-analyses the table's expressions.
        changes = []
        for column in columns:
            spec = f"{column.name} {column.type} {column.kind} {column.expression}"
            fresh = column.name not in existing or column.name in replaced
            changes.append(f"ADD COLUMN IF NOT EXISTS {spec}" if fresh else f"MODIFY COLUMN {spec}")
        self._alter_columns("install_derived_columns", f"ALTER TABLE {table} " + ", ".join(changes))
        version = (state.version if state else 0) + 1
        self.engine.command("drop_link_view", f"DROP VIEW IF EXISTS {self.db}.{LINK_VIEW} {self.on_cluster}")
        self.engine.command(
            "create_link_view",
            f"CREATE MATERIALIZED VIEW {self.db}.{LINK_VIEW} {self.on_cluster} TO "
            f"{self.db}.{self.topology.storage_name('object_links')} "
            f"(ObjectType String, ObjectId String, TraceId String, SpanId String, Timestamp DateTime64(9), "
            f"Tenant String, Agent String, Source String, RulesVersion UInt64) AS "
            f"{links_select(self.db, version, table=self.spans)}",
            settings=DDL_SETTINGS,
        )
        self._record("install", wanted, version, rules)
        if state is None and not self._span_count():
            self._record("history", wanted, version, rules)  # nothing stored: nothing to re-derive
        elif state is not None and not state.stale and self._stored_derivation(columns) == stored_before:
            self._record("history", wanted, version, rules)  # only read-time columns changed
        return self.state()  # type: ignore[return-value]

    def _stored_derivation(self, columns: list[DerivedColumn]) -> list[tuple]:
        """How the engine computes the stored derived columns now (as it prints them), by name."""
        names = [c.name for c in columns if c.kind not in ("ALIAS", "EPHEMERAL")]
        return [tuple(row) for row in self.engine.query(
            "stored_derivation",
            "SELECT name, type, default_kind, default_expression FROM system.columns WHERE database = {db:String} "
            "AND table = {table:String} AND has({names:Array(String)}, name) ORDER BY name",
            {"db": self.db, "table": self.spans, "names": names},
        )]

    def _alter_columns(self, name: str, sql: str) -> None:
        """Change the spans' columns; on a cluster the Distributed table's too (its columns must match)."""
        self.engine.command(name, sql, settings=DDL_SETTINGS)
        mirror = mirror_on_distributed(sql)
        if mirror:
            self.engine.command(f"{name}_distributed", mirror, settings=DDL_SETTINGS)

    def validate(self, rules: RuleSet, columns: list[DerivedColumn]) -> None:
        """Refuse rules the engine would fail on, before any DDL: patterns RE2 refuses, and every
        expression evaluated once over a row that carries every attribute a rule names.

        Raises :class:`RulesError` naming the lines (patterns) or the engine's reason.
        """
        problems = self.check_patterns(rules)
        if problems:
            raise RulesError(problems, "rules")
        keys = sorted({key for column in columns for key in _KEY.findall(column.inline)})
        sample = "map(" + ", ".join(f"{key}, '1'" for key in keys) + ")" if keys else "map()"
        row = (f"SELECT {sample} AS SpanAttributes, {sample} AS ResourceAttributes, now64(9) AS Timestamp, "
               "'llm' AS Operation")
        derived = [c for c in columns if c.kind == "DEFAULT"]
        try:
            self.engine.query("dry_run_rules", "SELECT " + ", ".join(f"{c.inline} AS {c.name}" for c in derived)
                              + f" FROM ({row})", settings=DDL_SETTINGS)
        except StoreError as exc:
            raise RulesError([(None, f"the engine cannot evaluate these rules: {str(exc).splitlines()[0][:400]}")],
                             "rules") from None

    def _view_exists(self) -> bool:
        return bool(self.engine.query(
            "link_view_exists", "SELECT 1 FROM system.tables WHERE database = {db:String} AND name = {name:String}",
            {"db": self.db, "name": LINK_VIEW},
        ))

    def _span_count(self) -> int:
        return self.engine.query("span_count", f"SELECT count() FROM {self.db}.otel_traces")[0][0]

    # -- history -----------------------------------------------------------------

    def partitions(self) -> list[str]:
        return [row[0] for row in self.engine.query(
            "span_partitions",
            f"SELECT DISTINCT partition_id FROM {self.topology.parts_of('system.parts')} WHERE database = {{db:String}} "
            "AND table = {table:String} AND active ORDER BY partition_id DESC",
            {"db": self.db, "table": self.spans},
        )]

    def rederive(self, rules: RuleSet, default_tenant: str, progress: Progress | None = None) -> int:
        """Re-derive every stored span and its links with the rules in force, newest partition first.

        Per partition: one ``ALTER UPDATE`` of the derived columns (waited for), then its links
        re-inserted at the new version and the older derived ones deleted. Manual links stay.
        Returns the number of spans re-derived.
        """
        state = self.install(rules, default_tenant)
        columns = [c for c in self.columns(rules, default_tenant) if c.kind == "DEFAULT"]
        # Usage columns read Operation: it is re-derived first, the others after, from the new value.
        passes = [", ".join(f"{c.name} = {c.inline}" for c in columns if (c.name == "Operation") == first)
                  for first in (True, False)]
        partitions = self.partitions()
        try:
            done = self._rederive_partitions(state, passes, partitions, progress)
        except StoreError:
            # A mutation that cannot finish blocks every later one (TTL, the next re-derive): stop it.
            self.engine.command("kill_rederive", f"KILL MUTATION {self.on_cluster} WHERE database = {{db:String}} "
                                "AND table = {table:String} AND NOT is_done", {"db": self.db, "table": self.spans})
            raise
        self._record("history", state.installed, state.version, rules, done)
        return done

    def _rederive_partitions(self, state: DerivationState, passes: list[str], partitions: list[str],
                             progress: Progress | None) -> int:
        done = 0
        for index, partition in enumerate(partitions):
            params = {"partition": partition}
            spans = self.engine.query(
                "partition_spans",
                f"SELECT count() FROM {self.db}.otel_traces WHERE _partition_id = {{partition:String}}", params,
            )[0][0]
            for assignments in passes:
                self.engine.command(
                    "rederive_partition",
                    f"ALTER TABLE {self.db}.{self.spans} {self.on_cluster} UPDATE {assignments} "
                    f"IN PARTITION ID {{partition:String}} WHERE 1",
                    params, settings=MUTATION_SETTINGS,
                )
            self.engine.command(
                "relink_partition",
                f"INSERT INTO {self.db}.object_links ({', '.join(LINK_COLUMNS)}) "
                + links_select(self.db, state.version, " WHERE _partition_id = {partition:String}"),
                params, settings=self._co_located,
            )
            done += spans
            if progress:
                progress(index + 1, len(partitions))
        self.engine.command(
            "drop_old_links",
            f"ALTER TABLE {self.db}.{self.topology.storage_name('object_links')} {self.on_cluster} DELETE "
            "WHERE Source = 'span' AND RulesVersion < {version:UInt64}",
            {"version": state.version}, settings=MUTATION_SETTINGS,
        )
        self.engine.command(
            "restore_manual_links",
            f"INSERT INTO {self.db}.object_links ({', '.join(LINK_COLUMNS)}) SELECT ObjectType, ObjectId, TraceId, "
            f"SpanId, Timestamp, Tenant, Agent, 'manual', {int(state.version)} FROM {self.db}.manual_links",
        )
        return done

    # -- preview -----------------------------------------------------------------

    def preview(self, rules: RuleSet, sample: int = 1_000_000) -> list[RulePreview]:
        """How many stored spans (of the newest ``sample``) each rule would link or classify."""
        out: list[RulePreview] = []
        source = f"(SELECT SpanAttributes, ResourceAttributes FROM {self.db}.otel_traces " \
                 f"ORDER BY Timestamp DESC LIMIT {int(sample)})"
        for rule in rules.links:
            expr = link_rule_preview(rule)
            spans, objects, examples = self.engine.query(
                "preview_link_rule",
                f"SELECT countIf(notEmpty(found)), uniqExactArray(found), groupUniqArrayArray(5)(found) FROM "
                f"(SELECT {expr} AS found FROM {source})",
            )[0]
            out.append(_preview("link", rule, spans, objects, sorted(examples)))
        for rule in rules.fields:
            spans = self.engine.query(
                "preview_field_rule", f"SELECT countIf({field_rule_preview(rule)}) FROM {source}",
            )[0][0]
            out.append(_preview("field", rule, spans))
        return out

    def check_patterns(self, rules: RuleSet) -> list[tuple[int | None, str]]:
        """Patterns the engine's regex library (RE2) refuses, with their lines."""
        problems = []
        for rule in rules.links:
            if rule.pattern is None:
                continue
            try:
                self.engine.query("check_pattern", "SELECT match('', {pattern:String})", {"pattern": rule.pattern})
            except Exception as exc:  # the engine's message says why
                problems.append((rule.line, f"pattern {rule.pattern!r} is not valid for ClickHouse (RE2): "
                                            f"{str(exc).splitlines()[0][:300]}"))
        return problems

    # -- rates -------------------------------------------------------------------

    def unresolved_rates(self, limit: int = 1000) -> list[tuple[str, str, date]]:
        """(provider, model, day) of stored calls with tokens and no rates row yet."""
        return [tuple(row) for row in self.engine.query(  # type: ignore[misc]
            "unresolved_rates",
            f"SELECT DISTINCT toString(Provider), toString(Model), toDate(Timestamp) FROM {self.db}.otel_traces "
            "WHERE (InputTokens + OutputTokens) > 0 AND isNull(ReportedCostUsd) AND "
            f"NOT dictHas('{self.db}.{RATES_DICTIONARY}', {RATES_KEY}) LIMIT {{limit:UInt32}}",
            {"limit": limit},
        )]

    def insert_rates(self, rows: list[RateRow]) -> None:
        if not rows:
            return
        names = ["Provider", "Model", "Day", "Known", "InputRate", "OutputRate", "CacheReadRate", "CacheWriteRate",
                 "PerCall", "Source"]
        data = [[r.provider, r.model, r.day, int(r.known), r.input, r.output, r.cache_read, r.cache_write,
                 r.per_call, r.source] for r in rows]
        self.engine.insert("insert_rates", f"{self.db}.model_rates_table", [list(c) for c in zip(*data)], names)
        self._reload_rates()

    def clear_rates(self) -> None:
        self.engine.command("clear_rates", f"TRUNCATE TABLE {self.db}.model_rates_table "
                            f"{self.topology.on_cluster('model_rates_table')}".rstrip())
        self._reload_rates()

    def _reload_rates(self) -> None:
        """Every node's dictionary from its replica now (a replica behind catches up within the lifetime)."""
        self.engine.command("reload_rates", f"SYSTEM RELOAD DICTIONARY {self.db}.{RATES_DICTIONARY} "
                            f"{self.topology.on_cluster(RATES_DICTIONARY)}".rstrip())

    @property
    def _co_located(self) -> dict[str, int] | None:
        """On a cluster, an INSERT ... SELECT between two Distributed tables of the data cluster runs on each
        shard over its local tables (a trace's spans and links are on one shard): no row crosses the network."""
        return {"parallel_distributed_insert_select": 2} if self.topology.clustered else None


def _preview(kind: str, rule: LinkRule | FieldRule, spans: int, objects: int = 0,
             examples: list[str] | None = None) -> RulePreview:
    body = json.loads(rule.model_dump_json(exclude={"origin", "line"}, exclude_defaults=True))
    return RulePreview(kind=kind, origin=rule.origin, line=rule.line, rule=body, spans=spans, objects=objects,
                       examples=examples or [])
