"""Meaning derived by the engine: rules compiled into column expressions and a link view.

Every derived column of ``otel_traces`` (Agent, Operation, Model, tokens, actions, ...) is a
``DEFAULT`` expression over the row's own attribute maps, so a row any writer inserts — our
collector, or the OpenTelemetry Collector's ClickHouse exporter with its 22 columns — gets its
fields from the engine at insert. Links come from a materialized view over the derived
``Objects`` column into ``object_links``. Cost is an ``ALIAS``: tokens times the rates in
``model_rates_dict`` (a dictionary over ``model_rates_table``, filled from the price package by the
collector; migration 0028), read when queried, so a price learnt later applies to history without a
rewrite.

Changing the rules changes the expressions (:func:`Derivation.install`, metadata only) and
re-derives history partition by partition (:func:`Derivation.rederive`, one ``ALTER UPDATE``
and one link re-insert per partition); no re-ingest.

Rule values (attribute names, patterns, constants) are written into DDL, which takes no bound
parameters: :func:`sql_string` escapes every one of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextvars import ContextVar
from collections.abc import Callable
from dataclasses import dataclass

from flightrec.store.rules import FIELDS, FieldRule, LinkRule, RuleSet

SPAN, RESOURCE = "SpanAttributes", "ResourceAttributes"
FILTERED = {SPAN: "_DeriveSpan", RESOURCE: "_DeriveResource"}
# The attribute maps expressions read: the stored ones (re-derive, preview) or the filtered EPHEMERAL
# ones (the columns' DEFAULTs); set while compiling, never by rewriting compiled text.
_MAPS: ContextVar[tuple[str, str]] = ContextVar("maps", default=(SPAN, RESOURCE))
# The rates the cost columns read, by (provider, model, day of the call) (migration 0028).
RATES_DICTIONARY = "model_rates_dict"
RATES_KEY = "(toString(Provider), toString(Model), toDate(Timestamp))"
# Whitespace trimmed from values (ClickHouse's trimBoth alone trims spaces only).
BLANKS = "' \\t\\n\\r\\x0b\\x0c'"

# field -> (column, type)
COLUMNS: dict[str, tuple[str, str]] = {
    "tenant": ("Tenant", "LowCardinality(String)"),
    "agent": ("Agent", "LowCardinality(String)"),
    "operation": ("Operation", "LowCardinality(String)"),
    "model": ("Model", "LowCardinality(String)"),
    "provider": ("Provider", "LowCardinality(String)"),
    "flow": ("Flow", "LowCardinality(String)"),
    "prompt_version": ("PromptVersion", "LowCardinality(String)"),
    "agent_version": ("AgentVersion", "LowCardinality(String)"),
    "tool": ("Tool", "LowCardinality(String)"),
    "session_id": ("SessionId", "String"),
    "user_id": ("UserId", "String"),
    "input_tokens": ("InputTokens", "UInt32"),
    "output_tokens": ("OutputTokens", "UInt32"),
    "cache_read_tokens": ("CacheReadTokens", "UInt32"),
    "cache_write_tokens": ("CacheWriteTokens", "UInt32"),
    "cost_usd": ("ReportedCostUsd", "Nullable(Float64)"),
    "action_name": ("ActionName", "LowCardinality(String)"),
    "action_system": ("ActionSystem", "LowCardinality(String)"),
    "action_risk": ("ActionRisk", "LowCardinality(String)"),
    "action_amount": ("ActionAmount", "Float64"),
    "action_currency": ("ActionCurrency", "LowCardinality(String)"),
    "mode": ("Mode", "LowCardinality(String)"),
    "guardrail_verdict": ("GuardrailVerdict", "LowCardinality(String)"),
    "human_decision": ("HumanDecision", "LowCardinality(String)"),
    "inputs": ("Inputs", "Array(String)"),
}
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")
OBJECTS_COLUMN = ("Objects", "Array(String)")
LINK_VIEW = "object_links_derived"
# The columns links_select yields, in its order (the link view, re-derivations and repairs insert them).
LINK_COLUMNS = ("ObjectType", "ObjectId", "TraceId", "SpanId", "Timestamp", "Tenant", "Agent", "Source", "RulesVersion")
RATE_COLUMNS = ("Known", "InputRate", "OutputRate", "CacheReadRate", "CacheWriteRate", "PerCall")


def sql_string(value: str) -> str:
    """A ClickHouse string literal for any text: quotes, backslashes and control bytes escaped."""
    out = []
    for char in value:
        if char in "\\'":
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def _array(values: list[str]) -> str:
    return "[" + ", ".join(sql_string(value) for value in values) + "]"


def _trim(value: str) -> str:
    return f"trimBoth({value}, {BLANKS})"


def _lookup(source: str, attribute: str) -> str:
    key = sql_string(attribute)
    span, resource = _MAPS.get()
    if source == "span":
        return f"{span}[{key}]"
    if source == "resource":
        return f"{resource}[{key}]"
    return f"if({span}[{key}] != '', {span}[{key}], {resource}[{key}])"


def _candidate(rule: FieldRule, source: str) -> tuple[str, str]:
    """One rule's (condition, value) for its field on one attribute map: the value counts when
    the condition holds. Plain (not Nullable) values: the engine's Nullable paths cost twice."""
    kind, vocabulary = FIELDS[rule.field]
    raw = _json_value(_lookup(source, rule.attribute), rule.json_keys)
    if rule.value is not None:
        condition, value = f"{raw} != ''", sql_string(rule.value)
    else:
        folded = f"lowerUTF8({_trim(raw)})" if kind == "lower" or rule.values else raw
        if rule.values:
            keys = list(rule.values)
            # Unmapped values pass through, except into a closed vocabulary (only what the rule maps counts).
            otherwise = "''" if vocabulary is not None else folded
            folded = f"transform({folded}, {_array(keys)}, {_array([rule.values[k] for k in keys])}, {otherwise})"
        value = {
            "text": folded,
            "lower": f"lowerUTF8({folded})",
            "upper": f"upperUTF8({_trim(folded)})",
            # parsed as a float, so 'nan', 'inf', '1e30' and '12.0' all land somewhere sane
            "count": (f"if(isFinite(ifNull(toFloat64OrNull({_trim(folded)}), nan)), "
                      f"toInt64(least(greatest(toFloat64OrNull({_trim(folded)}), 0), 4294967295)), NULL)"),
            "number": f"toFloat64OrNull({folded})",
            "list": (f"if(startsWith({folded}, '['), arrayFilter(x -> x != '', JSONExtract({folded}, 'Array(String)')), "
                     f"arrayFilter(x -> x != '', arrayMap(x -> {_trim('x')}, splitByChar(',', {folded}))))"),
        }[kind]
        condition = {
            "count": f"isNotNull({value})",
            "number": f"isFinite(ifNull({value}, nan))",
            "list": f"notEmpty({value})",
        }.get(kind, f"{value} != ''")
        if kind in ("count", "number"):
            value = f"assumeNotNull({value})"
    if vocabulary is not None and rule.value is None:
        condition = f"{value} IN {_array(sorted(vocabulary))}"
    if rule.when:
        condition = " AND ".join([*(f"{_MAPS.get()[0]}[{sql_string(k)}] = {sql_string(v)}" for k, v in rule.when.items()),
                                  f"({condition})"])
    return condition, value


def _field(rules: list[FieldRule], kind: str, default: str) -> str:
    """The first value any rule gives, span attributes before resource ones."""
    candidates = [_candidate(rule, "span") for rule in rules if rule.source in ("span", "any")]
    candidates += [_candidate(rule, "resource") for rule in rules if rule.source in ("resource", "any")]
    if kind == "list":
        default = "CAST([], 'Array(String)')"
    if not candidates:
        return default
    return f"multiIf({''.join(f'{condition}, {value}, ' for condition, value in candidates)}{default})"


def _json_value(value: str, keys: list[str]) -> str:
    """The string or number at a path inside a JSON-string attribute ('' when absent); the value when no path."""
    if not keys:
        return value
    path = ", ".join(sql_string(key) for key in keys)
    return (f"if(JSONType({value}, {path}) = 'String', JSONExtractString({value}, {path}), "
            f"if(JSONType({value}, {path}) IN ('Int64', 'UInt64', 'Double', 'Bool'), "
            f"JSONExtractRaw({value}, {path}), ''))")


def _link(rule: LinkRule) -> str:
    """The ``type:id`` strings one link rule finds on a row."""
    value = _json_value(_lookup(rule.source, rule.attribute), rule.json_keys)
    if rule.split:
        items = (f"if(startsWith({_trim(value)}, '['), JSONExtract({_trim(value)}, 'Array(String)'), "
                 f"splitByChar(',', {value}))")
    else:
        items = f"[{value}]"
    items = f"arrayFilter(x -> x != '', arrayMap(x -> {_trim('x')}, {items}))"
    groups = rule.groups
    if rule.pattern is not None:
        pattern = sql_string(rule.pattern)
        matches = f"arrayMap(x -> extractGroups(x, {pattern}), arrayFilter(x -> match(x, {pattern}), {items}))"
        ident = _trim(f"g[{groups['id']}]")
        kind = f"g[{groups['type']}]" if "type" in groups else None
        element, source = "g", matches
    else:
        ident, kind, element, source = "x", None, "x", items
    if kind is None:
        kind = sql_string(rule.type) if rule.type is not None else _lookup(rule.source, rule.type_from or "")
    kind = f"lowerUTF8({_trim(kind)})"
    if rule.rename:
        names = list(rule.rename)
        kind = f"transform({kind}, {_array(names)}, {_array([rule.rename[n] for n in names])}, {kind})"
    pairs = f"arrayMap({element} -> ({kind}, {ident}), {source})"
    return f"arrayMap(p -> concat(p.1, ':', p.2), arrayFilter(p -> p.1 != '' AND p.2 != '', {pairs}))"


@dataclass(frozen=True)
class DerivedColumn:
    """A column of otel_traces the engine computes: ``expression`` is what the table declares,
    ``inline`` the same value written over the attribute maps themselves (for ``ALTER UPDATE``,
    which cannot read EPHEMERAL columns)."""

    name: str
    type: str
    expression: str
    kind: str = "DEFAULT"  # DEFAULT, ALIAS or EPHEMERAL
    inline: str = ""


def _counts_usage(operation: str, aggregate_kinds: dict[str, frozenset[str]]) -> str:
    """Whether a span's tokens and cost are its own (LLM calls), not totals over its children."""
    aggregate = " OR ".join(f"{_MAPS.get()[0]}[{sql_string(key)}] IN {_array(sorted(kinds))}"
                            for key, kinds in aggregate_kinds.items()) or "0"
    return f"(({operation}) = 'llm' OR (({operation}) != 'agent' AND NOT ({aggregate})))"


def compile_columns(rules: RuleSet, *, default_tenant: str, database: str) -> list[DerivedColumn]:
    """Every derived column of otel_traces, its type and its expression, from the rules.

    A DEFAULT reads two EPHEMERAL maps of only the attributes some rule names, filtered once per
    row at insert (a map lookup scans the row's keys: over the full maps, ~120 lookups a span were
    most of the derivation's cost, 15.6 µs a span against ~6 filtered); ``inline`` is the same value
    over the stored maps, for ``ALTER UPDATE`` (which cannot read EPHEMERAL columns) and previews.
    """
    inline = _compile(rules, default_tenant)
    token = _MAPS.set((FILTERED[SPAN], FILTERED[RESOURCE]))
    try:
        filtered = _compile(rules, default_tenant)
    finally:
        _MAPS.reset(token)
    keys = sorted({key for _, expression in inline for key in _KEY.findall(expression)})
    wanted = "(" + ", ".join(keys or ["''"]) + ")"
    columns = [DerivedColumn(alias, "Map(LowCardinality(String), String)",
                             f"mapFilter((k, v) -> k IN {wanted}, {source})", "EPHEMERAL")
               for source, alias in FILTERED.items()]
    columns += [DerivedColumn(name, kind, table, "DEFAULT", stored)
                for ((name, kind), table), (_, stored) in zip(filtered, inline)]
    return [*columns, *cost_columns(database)]


def _compile(rules: RuleSet, default_tenant: str) -> list[tuple[tuple[str, str], str]]:
    """(column, type) and expression of every derived column, over the maps in ``_MAPS``."""
    from flightrec.store.conventions import AGGREGATE_KINDS, COST_PARTS

    by_field: dict[str, list[FieldRule]] = {field: [] for field in FIELDS}
    for rule in rules.fields:
        by_field[rule.field].append(rule)
    parts = [f"{_MAPS.get()[0]}[{sql_string(key)}]" for key in COST_PARTS]
    summed = " + ".join(f"ifNull(toFloat64OrNull({part}), 0)" for part in parts)
    reported_parts = f"if({' OR '.join(f'{part} != {chr(39) * 2}' for part in parts)}, {summed}, NULL)" if parts else "NULL"
    defaults = {"tenant": sql_string(default_tenant), "operation": "'other'", "cost_usd": reported_parts}
    expressions: dict[str, str] = {}
    for field, (kind, _) in FIELDS.items():
        default = defaults.get(field, {"count": "0", "number": "0"}.get(kind, "''"))
        expressions[field] = _field(by_field[field], kind, default)
    # Usage reads the derived Operation column (not its expression again: it is the longest one).
    counts = _counts_usage("Operation", AGGREGATE_KINDS)
    for field in USAGE_FIELDS:
        value = expressions[field]
        if field == "cost_usd":
            expressions[field] = f"if({counts}, if(isNull({value}), NULL, greatest(0, {value})), NULL)"
        else:
            expressions[field] = f"if({counts}, least(greatest({value}, 0), 4294967295), 0)"
    links = [_link(rule) for rule in rules.links]
    objects = f"arrayDistinct(arrayConcat({', '.join(links)}))" if links else "CAST([], 'Array(String)')"
    return [(COLUMNS[field], expressions[field]) for field in FIELDS] + [(OBJECTS_COLUMN, objects)]


_KEY = re.compile(r"(?:Span|Resource)Attributes\[('(?:[^'\\]|\\.)*')\]")


def attribute_keys(expression: str) -> set[str]:
    """The attribute names an expression reads (the inverse of :func:`sql_string` on each key)."""
    unescape = re.compile(r"\\x([0-9a-f]{2})|\\(.)")
    return {unescape.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], literal[1:-1])
            for literal in _KEY.findall(expression)}
def cost_columns(database: str) -> list[DerivedColumn]:
    """CostUsd and CostKnown, read-time: a reported cost, else tokens at the rates of the call's day."""
    rates = sql_string(f"{database}.{RATES_DICTIONARY}")

    def rate(column: str) -> str:
        return f"ifNull(dictGetOrNull({rates}, {sql_string(column)}, {RATES_KEY}), 0)"

    cached = "(toInt64(CacheReadTokens) + toInt64(CacheWriteTokens))"
    uncached = f"if(toInt64(InputTokens) >= {cached}, toInt64(InputTokens) - {cached}, toInt64(InputTokens))"
    priced = (f"{uncached} * {rate('InputRate')} + OutputTokens * {rate('OutputRate')} + "
              f"CacheReadTokens * {rate('CacheReadRate')} + CacheWriteTokens * {rate('CacheWriteRate')} + "
              f"{rate('PerCall')}")
    unpriced = f"(InputTokens + OutputTokens) > 0 AND {rate('Known')} = 0"
    cost = f"if(isNotNull(ReportedCostUsd), assumeNotNull(ReportedCostUsd), if({unpriced}, 0, if((InputTokens + OutputTokens) = 0, 0, {priced})))"
    known = f"toUInt8(isNotNull(ReportedCostUsd) OR NOT ({unpriced}))"
    return [DerivedColumn("CostUsd", "Float64", cost, "ALIAS", cost), DerivedColumn("CostKnown", "UInt8", known, "ALIAS", known)]


def links_select(database: str, version: int, where: str = "", table: str = "otel_traces") -> str:
    """The rows of object_links the derived Objects column names (the view's query over ``table``, the spans'
    storage, and the re-derive's over the spans)."""
    return (
        "SELECT substringIndex(o, ':', 1) AS ObjectType, substring(o, position(o, ':') + 1) AS ObjectId, "
        "TraceId, SpanId, Timestamp, Tenant, Agent, 'span' AS Source, "
        f"toUInt64({int(version)}) AS RulesVersion FROM {database}.{table} ARRAY JOIN Objects AS o{where}"
    )


def link_rule_preview(rule: LinkRule) -> str:
    """The expression one link rule evaluates to (for ``rules check``'s counts)."""
    return _link(rule)


def field_rule_preview(rule: FieldRule) -> str:
    """Whether one field rule gives its field a value on a row."""
    sources = [s for s in ("span", "resource") if rule.source in (s, "any")]
    return " OR ".join(f"({_candidate(rule, s)[0]})" for s in sources)


def fingerprint(columns: list[DerivedColumn]) -> str:
    text = json.dumps([(c.name, c.type, c.kind, c.expression) for c in columns])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


Progress = Callable[[int, int], None]
