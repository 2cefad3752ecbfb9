"""Redaction at intake: personal data is replaced in spans and log records before the WAL.

A processor in the OpenTelemetry Collector's sense (contrib's ``redactionprocessor`` is the
model: its ``ignored_keys`` are our allow list, its ``blocked_key_patterns`` our deny list, its
``blocked_values`` our user patterns), run on the decoded request of every intake path, so what
is acknowledged, stored, hashed into the evidence log and narrated is the redacted record.

What is scanned: string values of span, resource, scope, event and link attributes, of log
record attributes and log bodies, strings inside arrays and key-value lists at any depth, and a
span's status message (free text, where an error quotes its input). Not scanned: span, event and
log event names (low-cardinality operation names by OpenTelemetry's rules, which stories and
rollups group by), ids and times (bytes and integers), integer, double and bool values.

Each match becomes ``[redacted:RULE]``, a stable marker without quotes or backslashes, so JSON
text (GenAI messages) stays valid and a story reads "wrote to [redacted:email]". Keys on the
allow list (and every attribute a link rule reads) are never touched; a key on the deny list has
its whole value, of any type, replaced by ``[redacted:deny]``; the allow list wins.

Cost: a request is first screened on its serialized bytes (OTLP strings are stored verbatim in
protobuf): literal-led scans of one translated copy find every offset where a rule could match; a
wire walk maps those offsets to spans (log records), and only those are walked value by value.
A user pattern is screened by a literal every match holds; one without any walks every request.
"""

from __future__ import annotations

import fnmatch
import re
import re._parser as sre_parse  # the stdlib's own parser: the shape of a user pattern, for the nesting check
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from flightrec.store.conventions import DEFAULT_LINK_ALIASES, OBJECT_ID_ATTR, OBJECT_TYPE_ATTR, OBJECTS_ATTR

Rule = Literal["email", "card", "iban", "phone"]
BUILTIN_RULES: tuple[str, ...] = ("email", "card", "iban", "phone")
DENY_RULE = "deny"
SIGNALS = ("traces", "logs")
PATTERN_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_ALLOW_KEYS = ("flightrec.*", "service.*", "telemetry.*")
DEFAULT_DENY_KEYS: tuple[str, ...] = ()  # each glob costs a scan of every request: opt in (README has examples)
KEY_CACHE_SIZE = 8192


def link_keys(rules: Any) -> set[str]:
    """The attributes the built-in and the user's link rules read (a :class:`flightrec.store.rules.RuleSet`):
    object ids a story is found by, so never redacted."""
    keys = {OBJECT_ID_ATTR, OBJECT_TYPE_ATTR, OBJECTS_ATTR, *DEFAULT_LINK_ALIASES}
    for rule in rules.links:
        keys.add(rule.attribute)
        if rule.type_from:
            keys.add(rule.type_from)
    return keys


def marker(rule: str) -> str:
    """What a redacted value or match reads as: ``[redacted:email]``."""
    return f"[redacted:{rule}]"


class RedactionError(ValueError):
    """A redaction setting that cannot be used; the message names the pattern or key."""


BACKTRACKING_REPEATS = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT)


def _children(op: Any, arg: Any) -> list[Any]:
    """The sub-patterns of one parsed item."""
    if op in (*BACKTRACKING_REPEATS, sre_parse.POSSESSIVE_REPEAT):
        return [arg[2]]
    if op is sre_parse.SUBPATTERN:
        return [arg[-1]]
    if op is sre_parse.BRANCH:
        return list(arg[1])
    if op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
        return [arg[1]]
    if op is sre_parse.ATOMIC_GROUP:
        return [arg]
    return []


def _variable_inside(items: Any) -> bool:
    """Whether a parsed sub-pattern holds a backtracking repeat of variable length (``a+``, ``a{1,64}``; possessive
    repeats and atomic groups give nothing back, so an outer repeat cannot retry them)."""
    for op, arg in items:
        if op in BACKTRACKING_REPEATS and arg[0] != arg[1]:
            return True
        if op not in (sre_parse.POSSESSIVE_REPEAT, sre_parse.ATOMIC_GROUP) and any(
                _variable_inside(child) for child in _children(op, arg)):
            return True
    return False


def _nested_repeat(items: Any) -> bool:
    """Whether a repeat that may run more than once holds a variable-length one: ``(a+)+``, ``(a{1,9})*``: the
    ways to split a run between them grow exponentially, and ``re`` tries them all before failing."""
    for op, arg in items:
        if op in BACKTRACKING_REPEATS and arg[1] > 1 and _variable_inside(arg[2]):
            return True
        if any(_nested_repeat(child) for child in _children(op, arg)):
            return True
    return False


def compile_pattern(name: str, pattern: str) -> re.Pattern[str]:
    """A user pattern compiled, or :class:`RedactionError` naming it: invalid, matches empty, or could backtrack
    catastrophically (a variable repeat inside a repeat; ``re`` has no timeout, so such patterns are refused).

    The check is conservative on nesting (it also refuses some safe forms, such as ``(?:[a-z]+\\.)+``, which
    possessive repeats fix) and blind to overlapping alternatives under a repeat (``(a|aa)+``).
    """
    if not PATTERN_NAME.match(name) or name in BUILTIN_RULES or name == DENY_RULE:
        raise RedactionError(f"redaction pattern name {name!r}: use lowercase letters, digits, '_' or '-' (at most 32, "
                             f"starting with a letter), and none of {', '.join((*BUILTIN_RULES, DENY_RULE))}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RedactionError(f"redaction pattern {name!r} ({pattern!r}) is not a valid regular expression: {exc}") from exc
    if compiled.search(""):
        raise RedactionError(f"redaction pattern {name!r} ({pattern!r}) matches the empty string; it must match "
                             "at least one character")
    if _nested_repeat(sre_parse.parse(pattern)):
        raise RedactionError(
            f"redaction pattern {name!r} ({pattern!r}) repeats a part that itself repeats (like (a+)+): it can take "
            "exponential time on a value that almost matches; make the inner repeat possessive (a++, [a-z]{1,9}+) "
            "or atomic ((?>...)), or drop the outer repeat")
    return compiled


def required_literal(pattern: re.Pattern[str]) -> bytes:
    """The longest run of literal characters every match of a pattern holds, as UTF-8 (b"": none known).

    Only the pattern's top level counts (and groups there, matched exactly once); a pattern that
    ignores case has none, as the bytes would differ.
    """
    if pattern.flags & re.IGNORECASE:
        return b""
    best, run = "", []
    items = list(sre_parse.parse(pattern.pattern))
    while items:
        op, arg = items.pop(0)
        if op is sre_parse.SUBPATTERN and not arg[1] & re.IGNORECASE:  # (group, add flags, del flags, body)
            items[:0] = list(arg[-1])
            continue
        if op is sre_parse.LITERAL:
            run.append(chr(arg))
            continue
        best, run = max(best, "".join(run), key=len), []
    return max(best, "".join(run), key=len).encode()


def check_patterns(patterns: dict[str, str]) -> dict[str, str]:
    """The user patterns, each compiled once to refuse a bad one by name (:func:`compile_pattern`)."""
    for name, pattern in patterns.items():
        compile_pattern(name, pattern)
    return patterns


class RedactionConfig(BaseModel):
    """What redaction replaces at intake; every default in one place (settings ``redaction_*``)."""

    enabled: bool = Field(default=True, description="redact at intake (false: spans and logs are kept as sent)")
    rules: list[Rule] = Field(default_factory=lambda: list(BUILTIN_RULES), description="built-in rules in force")
    patterns: dict[str, str] = Field(default_factory=dict, description="user rules: name -> regular expression")
    allow_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOW_KEYS),
                                  description="attribute keys (globs) never redacted; link keys are always added")
    deny_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_DENY_KEYS),
                                 description="attribute keys (globs, any case) whose whole value is replaced")

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        return check_patterns(value)

    @field_validator("allow_keys", "deny_keys")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        blank = [glob for glob in value if not glob.strip()]
        if blank:
            raise RedactionError("an empty key glob matches no attribute; remove it")
        return value


class RedactionCounts(BaseModel):
    """What redaction replaced since the server started, per signal and rule (matches, or values for ``deny``)."""

    enabled: bool
    rules: list[str] = Field(description="rules in force: built-in, user patterns, and deny when a deny list is set")
    traces: dict[str, int] = Field(default_factory=dict)
    logs: dict[str, int] = Field(default_factory=dict)
    total: int = 0

    def add(self, signal: str, tally: Counter[str]) -> None:
        counts = self.traces if signal == "traces" else self.logs
        for rule, count in tally.items():
            counts[rule] = counts.get(rule, 0) + count
            self.total += count


# --- the built-in rules -----------------------------------------------------------------------------
# ASCII classes throughout, so the byte screen and the string rules agree on what a digit or letter is.
# Digits that belong to a decimal number (0.4111..., 1,5...) are never a card or a phone.
_NOT_BEFORE = r"(?<![0-9A-Za-z_])(?<![0-9][.,])"
_NOT_AFTER = r"(?![0-9A-Za-z_])(?![.,][0-9])"
# Bounded local part and labels: the lookbehind makes only a word's first character a start, so a
# search is linear even over a long value with one '@'.
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}"
                   r"(?![A-Za-z0-9-])")
IBAN = r"(?P<iban>(?<![0-9A-Za-z_])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})"
CARD = (r"(?P<card>" + _NOT_BEFORE + r"(?:[0-9]{13,19}|[0-9]{4}(?P<sep>[ -])[0-9]{4,6}(?P=sep)[0-9]{4,5}"
        r"(?:(?P=sep)[0-9]{1,4}){0,2})" + _NOT_AFTER + ")")
# International notation only (+, country code, 8-15 digits in all): national formats look like ids,
# amounts and dates (TCK-1042, 415-555-0100 vs 2026-555-0100); add a user pattern for the ones you use.
PHONE = r"(?P<phone>(?<![0-9A-Za-z_+])\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}" + _NOT_AFTER + ")"
NUMBER_RULES = {"iban": IBAN, "card": CARD, "phone": PHONE}
# Shortest text each rule can match: shorter values are not scanned.
MIN_LENGTH = {"email": 6, "card": 13, "iban": 15, "phone": 9}

# The registered IBAN lengths by country (SWIFT IBAN registry); others are checked at the matched length.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum card numbers carry."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_network(digits: str) -> bool:
    """Whether the number's prefix and length are a card network's (Visa, Mastercard, Amex, Diners, JCB,
    Discover, UnionPay, Maestro): numbers starting 0, 1, 7, 8 or 9 (timestamps, most ids) never are."""
    first, size = digits[0], len(digits)
    if first == "4":
        return size in (13, 16, 19)
    if first == "2":
        return size == 16 and 2221 <= int(digits[:4]) <= 2720
    if first == "3":
        return (size == 15 and digits[1] in "47") or (digits[1] in "0689" and 14 <= size <= 19) or (
            digits[1] == "5" and 16 <= size <= 19)
    return first in "56" and 13 <= size <= 19


def iban_valid(compact: str) -> bool:
    """ISO 13616 check digits: the rearranged number, letters as 10..35, is 1 mod 97."""
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban_end(text: str) -> int:
    """Where a matched IBAN ends: its country's registered length (spaces skipped), or -1 when it is none."""
    country = text[:2]
    size = IBAN_LENGTHS.get(country)
    compact = text.replace(" ", "")
    if size is None:
        return len(text) if iban_valid(compact) else -1
    if len(compact) < size or not iban_valid(compact[:size]):
        return -1
    seen = 0
    for index, char in enumerate(text):
        if char != " ":
            seen += 1
            if seen == size:
                return index + 1
    return -1


# --- the byte screen ----------------------------------------------------------------------------------
# A translated copy of the bytes: upper-case letters as A, digits as 0, the separators the rules allow (a
# space as -), everything else as NUL; each rule's screen is a literal-led pattern over it.
_SCREEN_MAP = bytearray(256)
for _code in range(256):
    _char = chr(_code)
    if "A" <= _char <= "Z":
        _SCREEN_MAP[_code] = ord("A")
    elif "0" <= _char <= "9":
        _SCREEN_MAP[_code] = ord("0")
    elif _char in " -":
        _SCREEN_MAP[_code] = ord("-")
    elif _char in ".()+":
        _SCREEN_MAP[_code] = _code
SCREEN_MAP = bytes(_SCREEN_MAP)
# One scan each (an alternation of them is slower than all of them: it loses the literal-prefix search).
CARD_SCREENS = (b"0" * 13, b"0000-0000")
IBAN_SCREEN = re.compile(rb"AA00(?:-?[A0]){11}")
PHONE_SCREEN = re.compile(rb"\+0(?:[-.()]{0,2}0){7}")
EMAIL_LOCAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
EMAIL_DOMAIN = re.compile(rb"[A-Za-z0-9-]{1,63}\.[A-Za-z0-9-]")
GLOB_SPECIALS = re.compile(r"\[[^\]]*\]|[*?]")


def _longest_literal(glob: str) -> bytes:
    """The longest run of plain characters in a glob: a key it matches contains it."""
    return max(GLOB_SPECIALS.split(glob), key=len).encode().lower()


def _find_email(payload: bytes, start: int) -> int:
    """The next '@' with a local part before it and a domain label and dot after it, or -1."""
    at = payload.find(b"@", start)
    while at != -1:
        if at and payload[at - 1] in EMAIL_LOCAL and EMAIL_DOMAIN.match(payload, at + 1):
            return at
        at = payload.find(b"@", at + 1)
    return -1


ALLOW, DENY, SCAN = 0, 1, 2


class Redactor:
    """Redacts decoded OTLP requests in place: :meth:`redact` returns what it replaced, per rule (empty: nothing).

    Shared by every intake thread: a call keeps its counts in its own :class:`_Pass`; the key
    cache only ever gains entries equal to what any thread would compute.
    """

    def __init__(self, config: RedactionConfig, allowed: Iterable[str] = ()) -> None:
        self.config = config
        rules = set(config.rules)
        self.email = "email" in rules
        numbers = [NUMBER_RULES[name] for name in ("iban", "card", "phone") if name in rules]
        self.numbers = re.compile("|".join(numbers)) if numbers else None
        self.patterns = [(name, compile_pattern(name, pattern), marker(name)) for name, pattern in config.patterns.items()]
        # A user pattern's screen is a literal every match holds; one without any makes every request walked.
        self._pattern_screens = [required_literal(pattern) for _, pattern, _ in self.patterns]
        self._deny_screens = [_longest_literal(glob) for glob in config.deny_keys]
        self._unscreened = any(not literal for literal in (*self._pattern_screens, *self._deny_screens))
        self.min_length = 1 if self.patterns or not rules else min(MIN_LENGTH[name] for name in rules)
        self._allow_globs = _glob_regex(config.allow_keys)
        self._deny_globs = _glob_regex(config.deny_keys)
        self._allowed: frozenset[str] = frozenset(allowed)
        self._keys: dict[str, int] = {}

    @property
    def rule_names(self) -> list[str]:
        """The rules in force, as counts name them."""
        names = [name for name in BUILTIN_RULES if name in self.config.rules]
        names += [name for name, _, _ in self.patterns]
        return names + [DENY_RULE] * bool(self.config.deny_keys)

    def allow_also(self, keys: Iterable[str]) -> None:
        """Keys never redacted besides the allow list (the attributes link rules read); replaces the last set."""
        keys = frozenset(keys)
        if keys != self._allowed:
            self._allowed = keys
            self._keys = {}

    def policy(self, key: str) -> int:
        """ALLOW, DENY or SCAN for an attribute key (cached: a fleet uses few keys)."""
        found = self._keys.get(key)
        if found is None:
            if key in self._allowed or (self._allow_globs is not None and self._allow_globs.match(key)):
                found = ALLOW
            elif self._deny_globs is not None and self._deny_globs.match(key):
                found = DENY
            else:
                found = SCAN
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys = {}
            self._keys[key] = found
        return found

    def _finders(self, payload: bytes) -> list[Callable[[int], int]]:
        """One ``find(from) -> offset or -1`` per screen of the request's bytes; each finds a superset of where
        its rule can match (OTLP strings are verbatim UTF-8 in protobuf, and the screens drop the rules'
        boundaries and checks), so no offset found means nothing to redact."""
        finders: list[Callable[[int], int]] = []
        rules = self.config.rules
        if "email" in rules:
            finders.append(partial(_find_email, payload))
        finders += [partial(payload.find, literal) for literal in self._pattern_screens]
        if self._deny_screens:
            lowered = payload.lower()
            finders += [partial(lowered.find, literal) for literal in self._deny_screens]
        if self.numbers is not None:
            mapped = payload.translate(SCREEN_MAP)
            if "card" in rules:
                finders += [partial(mapped.find, screen) for screen in CARD_SCREENS]
            if "iban" in rules:
                finders.append(partial(_find_pattern, IBAN_SCREEN, mapped))
            if "phone" in rules:
                finders.append(partial(_find_pattern, PHONE_SCREEN, mapped))
        return finders

    def may_match(self, payload: bytes) -> bool:
        """Whether any rule could match in a serialized request: False means it holds nothing to redact."""
        if not self.config.enabled:
            return False
        return self._unscreened or any(find(0) != -1 for find in self._finders(payload))

    def _items_to_walk(self, payload: bytes, items: int) -> list[int] | None:
        """The spans (log records) a screen found something in, by index in the request; None: every one
        (user patterns, or a payload whose layout is not plain); [] when there is nothing to redact."""
        if self._unscreened:
            return None
        finders = self._finders(payload)
        firsts = [find(0) for find in finders]
        if all(first == -1 for first in firsts):
            return []
        ranges = item_ranges(payload)
        if ranges is None or len(ranges[0]) != items:
            return None
        starts, ends = ranges
        marked: set[int] = set()
        for find, found in zip(finders, firsts):
            while found != -1:
                index = bisect_right(starts, found) - 1
                if index >= 0 and found < ends[index]:
                    marked.add(index)
                    found = find(ends[index])  # the item is marked: look past it
                else:  # a resource's or scope's attributes, which are always walked, or noise between items
                    found = find(found + 1)
        return sorted(marked)

    def redact(self, request: Any, payload: bytes, signal: str) -> Counter[str]:
        """Redact a traces or logs request in place (``payload``: its serialized bytes, for the screen)."""
        if not self.config.enabled:
            return Counter()
        resources = request.resource_spans if signal == "traces" else request.resource_logs
        scopes = [scope for resource in resources
                  for scope in (resource.scope_spans if signal == "traces" else resource.scope_logs)]
        lists = [scope.spans if signal == "traces" else scope.log_records for scope in scopes]
        walk = self._items_to_walk(payload, sum(len(items) for items in lists))
        run = _Pass(self)
        if walk == []:
            return run.tally
        for resource in resources:
            run.attributes(resource.resource.attributes)
        for scope in scopes:
            run.attributes(scope.scope.attributes)
        visit = run.span if signal == "traces" else run.record
        if walk is None:
            for items in lists:
                for item in items:
                    visit(item)
            return run.tally
        offset, position = 0, 0
        for items in lists:
            size = len(items)
            while position < len(walk) and walk[position] < offset + size:
                visit(items[walk[position] - offset])
                position += 1
            offset += size
        return run.tally


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _records(buf: bytes, pos: int, end: int, field: int) -> list[tuple[int, int]]:
    """The byte ranges of one length-delimited field's occurrences in a message (ValueError: not plain)."""
    out = []
    wanted = field << 3 | 2
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # fields 1-15, the ones OTLP messages use
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 2:
            size = buf[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = _varint(buf, pos)
            if key == wanted:
                out.append((pos, pos + size))
            pos += size
        elif wire == 0:
            pos = _varint(buf, pos)[1]
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
    if pos != end:
        raise ValueError("a field runs past its message")
    return out


def item_ranges(payload: bytes) -> tuple[list[int], list[int]] | None:
    """Where each span (or log record) of a serialized request lies, in request order, or None.

    Traces and logs nest alike: request field 1 (resource_*), its field 2 (scope_*), its field 2
    (spans, log_records).
    """
    starts, ends = [], []
    try:
        for resource in _records(payload, 0, len(payload), 1):
            for scope in _records(payload, *resource, 2):
                for start, end in _records(payload, *scope, 2):
                    starts.append(start)
                    ends.append(end)
    except (IndexError, ValueError):
        return None
    return starts, ends


def _find_pattern(pattern: re.Pattern[bytes], buf: bytes, start: int) -> int:
    found = pattern.search(buf, start)
    return found.start() if found else -1


def _glob_regex(globs: list[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs), re.IGNORECASE | re.ASCII)


class _Pass:
    """One request's walk: the values it visits and what it replaced."""

    __slots__ = ("redactor", "tally")

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.tally: Counter[str] = Counter()

    def record(self, record: Any) -> None:
        self.attributes(record.attributes)
        self.value(record.body)

    def span(self, span: Any) -> None:
        self.attributes(span.attributes)
        if span.status.message:
            text = self.text(span.status.message)
            if text is not None:
                span.status.message = text
        for event in span.events:
            self.attributes(event.attributes)
        for link in span.links:
            self.attributes(link.attributes)

    def attributes(self, attributes: Any) -> None:
        policy = self.redactor.policy
        for kv in attributes:
            decision = policy(kv.key)
            if decision == SCAN:
                self.value(kv.value)
            elif decision == DENY:
                kv.value.Clear()
                kv.value.string_value = marker(DENY_RULE)
                self.tally[DENY_RULE] += 1

    def value(self, value: Any) -> None:
        kind = value.WhichOneof("value")
        if kind == "string_value":
            text = self.text(value.string_value)
            if text is not None:
                value.string_value = text
        elif kind == "array_value":
            for item in value.array_value.values:
                self.value(item)
        elif kind == "kvlist_value":
            self.attributes(value.kvlist_value.values)

    def text(self, text: str) -> str | None:
        """The text with every match replaced, or None when nothing matched."""
        redactor = self.redactor
        if len(text) < redactor.min_length:
            return None
        out, tally = text, self.tally
        if redactor.email and "@" in out:
            out, count = EMAIL.subn(marker("email"), out)
            if count:
                tally["email"] += count
        if redactor.numbers is not None and len(out) >= 9:
            out = redactor.numbers.sub(self._number, out)
        for name, pattern, replacement in redactor.patterns:
            out, count = pattern.subn(replacement, out)
            if count:
                tally[name] += count
        return out if out != text else None

    def _number(self, match: re.Match[str]) -> str:
        rule, found = match.lastgroup, match.group()
        if rule == "card":
            digits = found.replace(" ", "").replace("-", "")
            if not (card_network(digits) and luhn_valid(digits)):
                return found
        elif rule == "iban":
            end = _iban_end(found)
            if end < 0:
                return found
            self.tally[rule] += 1
            return marker(rule) + found[end:]
        elif rule == "phone":
            if not 8 <= sum(char.isdigit() for char in found) <= 15:
                return found
        self.tally[rule] += 1
        return marker(rule)
