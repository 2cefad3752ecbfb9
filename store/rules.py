"""Rules as data: how stored span attributes become canonical fields and business links.

One list of rules, the built-in conventions (``store/conventions.py``) plus the user's, user
rules first so they win. :mod:`flightrec.store.derive` compiles the list into the column
expressions and the link view the engine evaluates over stored rows; nothing in Python walks
a span's attributes.

A rules file is TOML (``flightrec serve --rules FILE``, ``FLIGHTREC_RULES``)::

    [[links]]                      # a business object a span names
    attribute = "business.object.id"
    type_from = "business.object.type"
    rename = { support_ticket = "ticket" }

    [[fields]]                     # another name for a canonical field
    field = "guardrail_verdict"
    attribute = "guardrail.decision"
    values = { allow = "pass", deny = "block" }

Errors name the line and the reason (:class:`RulesError`).
"""

from __future__ import annotations

import re
import tomllib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Source = Literal["span", "resource", "any"]
Origin = Literal["builtin", "settings", "user"]

# Canonical fields a field rule may feed: name -> (kind, closed vocabulary or None).
# kind: "text" (first non-empty value), "lower"/"upper" (case-folded text), "count" (an integer),
# "number" (a float), "list" (a string array).
OPERATIONS = frozenset({"agent", "llm", "tool", "retrieval", "guardrail", "action", "human", "undo", "other"})
FIELDS: dict[str, tuple[str, frozenset[str] | None]] = {
    "tenant": ("text", None),
    "agent": ("text", None),
    "operation": ("lower", OPERATIONS),
    "model": ("text", None),
    "provider": ("lower", None),
    "flow": ("text", None),
    "prompt_version": ("text", None),
    "agent_version": ("text", None),
    "tool": ("text", None),
    "session_id": ("text", None),
    "user_id": ("text", None),
    "input_tokens": ("count", None),
    "output_tokens": ("count", None),
    "cache_read_tokens": ("count", None),
    "cache_write_tokens": ("count", None),
    "cost_usd": ("number", None),
    "action_name": ("text", None),
    "action_system": ("text", None),
    "action_risk": ("lower", frozenset({"low", "medium", "high"})),
    "action_amount": ("number", None),
    "action_currency": ("upper", None),
    "mode": ("lower", frozenset({"observe", "assist", "auto"})),
    "guardrail_verdict": ("lower", frozenset({"pass", "warn", "block"})),
    "human_decision": ("lower", frozenset({"approve", "edit", "reject", "override"})),
    "inputs": ("list", None),
}
OBJECT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# Per table: every rule is part of the DDL the engine analyses on each insert (measured: 100 + 100
# user rules add ~0.4 s to a one-span insert, 300 + 300 ~4 s), and of each check's queries.
MAX_RULES = 100


class RulesError(ValueError):
    """A rules file that cannot be used: every problem, each with its line."""

    def __init__(self, problems: list[tuple[int | None, str]], name: str = "rules") -> None:
        self.problems = problems
        self.name = name
        super().__init__("; ".join(f"{name}:{line or '?'}: {reason}" for line, reason in problems))


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1, max_length=256, description="the attribute that holds the value")
    source: Source = Field(default="any", description="span attributes, resource attributes, or span then resource")
    json_path: str | None = Field(default=None, max_length=256,
                                  description="the value is JSON: the dotted path of the value inside it")
    origin: Origin = Field(default="user", description="where the rule comes from")
    line: int | None = Field(default=None, description="the rules file line that declared it")

    @property
    def json_keys(self) -> list[str]:
        path = (self.json_path or "").removeprefix("$").lstrip(".")
        return [part for part in path.split(".") if part]


class LinkRule(_Rule):
    """A business object a span names: its id from ``attribute``, its type from a constant,
    another attribute, or the ``type`` group of ``pattern``."""

    type: str | None = Field(default=None, description="a constant object type")
    type_from: str | None = Field(default=None, max_length=256, description="the attribute that holds the type")
    pattern: str | None = Field(default=None, max_length=512,
                                description="a regex over the value; group 'id' is the id, group 'type' the type")
    rename: dict[str, str] = Field(default_factory=dict, description="object type -> the type it is stored as")
    split: bool = Field(default=False, description="the value is a list (JSON array or comma-separated)")

    @field_validator("type")
    @classmethod
    def _type_name(cls, value: str | None) -> str | None:
        if value is not None and not OBJECT_TYPE.match(value):
            raise ValueError(f"type {value!r} must be lowercase letters, digits, '_', '.', '-' (starting with a letter)")
        return value

    @field_validator("rename")
    @classmethod
    def _rename(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            if not OBJECT_TYPE.match(target):
                raise ValueError(f"rename target {target!r} is not a valid object type")
        return {key.strip().lower(): target for key, target in value.items()}

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        if "id" not in compiled.groupindex:
            raise ValueError("pattern needs a named group (?P<id>...) for the object id")
        unknown = set(compiled.groupindex) - {"id", "type"}
        if unknown:
            raise ValueError(f"pattern groups may be 'id' and 'type' only, not {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _one_type(self) -> "LinkRule":
        group = self.pattern is not None and "type" in re.compile(self.pattern).groupindex
        given = [name for name, present in (("type", self.type is not None), ("type_from", self.type_from is not None),
                                            ("a (?P<type>...) group", group)) if present]
        if len(given) != 1:
            raise ValueError("a link rule takes its type from exactly one of 'type', 'type_from' or a "
                             f"(?P<type>...) group in 'pattern' (got {', '.join(given) or 'none'})")
        return self

    @property
    def groups(self) -> dict[str, int]:
        """Named groups of ``pattern`` by their 1-based index."""
        return dict(re.compile(self.pattern).groupindex) if self.pattern else {}

class FieldRule(_Rule):
    """Another attribute (and its values) feeding a canonical field."""

    field: str = Field(description="the canonical field: " + ", ".join(FIELDS))
    values: dict[str, str] = Field(default_factory=dict,
                                   description="attribute value -> canonical value (case-insensitive)")
    value: str | None = Field(default=None, description="a constant the field takes when the attribute is present")
    when: dict[str, str] = Field(default_factory=dict, description="only when these span attributes have these values")

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if value not in FIELDS:
            raise ValueError(f"unknown field {value!r}; fields are: {', '.join(FIELDS)}")
        return value

    @field_validator("values")
    @classmethod
    def _fold(cls, value: dict[str, str]) -> dict[str, str]:
        return {key.strip().lower(): target for key, target in value.items()}

    @model_validator(mode="after")
    def _in_vocabulary(self) -> "FieldRule":
        if self.value is not None and FIELDS[self.field][0] in ("count", "number", "list"):
            raise ValueError(f"'value' sets a text field; {self.field} is read from the attribute itself")
        vocabulary = FIELDS[self.field][1]
        if vocabulary is not None:
            targets = set(self.values.values()) | ({self.value} if self.value is not None else set())
            outside = sorted(target for target in targets if target.strip().lower() not in vocabulary)
            if outside:
                raise ValueError(f"{self.field} takes {', '.join(sorted(vocabulary))}; not {', '.join(outside)}")
        return self


class RuleSet(BaseModel):
    """The rules in force, in the order they apply (first match wins for a field; links add up)."""

    links: list[LinkRule] = Field(default_factory=list)
    fields: list[FieldRule] = Field(default_factory=list)

    def merged(self, other: "RuleSet") -> "RuleSet":
        """``other``'s rules ahead of these (they win)."""
        return RuleSet(links=[*other.links, *self.links], fields=[*other.fields, *self.fields])

    def user_count(self) -> int:
        return sum(rule.origin != "builtin" for rule in (*self.links, *self.fields))


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    links: list[dict] = Field(default_factory=list)
    fields: list[dict] = Field(default_factory=list)


_TOML_LINE = re.compile(r"at line (\d+)")


def _entry_lines(text: str, table: str) -> list[int]:
    header = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]")
    return [number for number, line in enumerate(text.splitlines(), 1) if header.match(line)]


def _key_line(text: str, start: int | None, key: str) -> int | None:
    """The line of ``key = ...`` in the entry that starts at ``start`` (else the entry's line)."""
    if start is None:
        return None
    lines = text.splitlines()
    pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for number in range(start, len(lines)):
        if number > start - 1 and lines[number].lstrip().startswith("["):
            break
        if pattern.match(lines[number]):
            return number + 1
    return start


def parse_rules(text: str, name: str = "rules", origin: Origin = "user") -> RuleSet:
    """A rules file's text as a :class:`RuleSet`; :class:`RulesError` lists every problem with its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        raise RulesError([(int(found.group(1)) if found else None, f"not valid TOML: {exc}")], name) from None
    problems: list[tuple[int | None, str]] = []
    unknown = sorted(set(data) - {"links", "fields"})
    if unknown:
        problems.append((None, f"unknown table(s) {', '.join(unknown)}: a rules file has [[links]] and [[fields]]"))
    rules = RuleSet()
    for table, model, target in (("links", LinkRule, rules.links), ("fields", FieldRule, rules.fields)):
        entries = data.get(table, [])
        lines = _entry_lines(text, table)
        if not isinstance(entries, list):
            problems.append((None, f"{table} must be an array of tables: write [[{table}]]"))
            continue
        if len(entries) > MAX_RULES:
            problems.append((lines[MAX_RULES] if len(lines) > MAX_RULES else None,
                             f"more than {MAX_RULES} [[{table}]] rules ({len(entries)}): merge them (one rule may "
                             "split a list, match a pattern or rename many types)"))
            continue
        for index, entry in enumerate(entries):
            line = lines[index] if index < len(lines) else None
            if not isinstance(entry, dict):
                problems.append((line, f"{table} entry {index + 1} must be a table"))
                continue
            if "origin" in entry or "line" in entry:
                problems.append((line, "'origin' and 'line' are set by the loader, not by the file"))
                continue
            try:
                target.append(model(**entry, origin=origin, line=line))
            except ValidationError as exc:
                for error in exc.errors():
                    key = str(error["loc"][0]) if error["loc"] else ""
                    where = _key_line(text, line, key) if key else line
                    message = error["msg"].removeprefix("Value error, ")
                    problems.append((where, f"{table} entry {index + 1}: {key + ': ' if key else ''}{message}"))
    if problems:
        raise RulesError(problems, name)
    return rules


def alias_rules(aliases: dict[str, str]) -> RuleSet:
    """The ``link_aliases`` setting (attribute -> object type) as link rules."""
    return RuleSet(links=[LinkRule(attribute=key, type=kind.strip().lower(), origin="settings")
                          for key, kind in aliases.items()])
