"""Turning attribute values into words: messages, arguments, money, verbs. Never raw JSON."""

from __future__ import annotations

import json
from typing import Any

MAX_QUOTE = 220
# What an erased value starts with (store/erasures.py writes ``[erased: <request id>]``); a story says "[erased]".
ERASED_PREFIX = "[erased: "
ERASED = "[erased]"

# action "noun.verb" names -> (base form, past form) of the verb phrase
ACTION_PHRASES: dict[str, tuple[str, str]] = {
    "refund.issue": ("issue a refund", "issued a refund"),
    "plan.change": ("change the plan", "changed the plan"),
    "ticket.assign": ("reassign the ticket", "reassigned the ticket"),
    "ticket.status": ("change the ticket status", "changed the ticket status"),
    "credit.apply": ("apply an account credit", "applied an account credit"),
    "order.update": ("update the order", "updated the order"),
    "email.send": ("send an email", "sent an email"),
}
IRREGULAR_PAST = {"send": "sent", "set": "set", "pay": "paid", "run": "ran", "write": "wrote", "put": "put"}


def past_tense(verb: str) -> str:
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and len(verb) > 2 and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def action_phrase(name: str) -> tuple[str, str]:
    """Base and past phrases for an action name: ``refund.issue`` -> issue a refund / issued a refund."""
    if name in ACTION_PHRASES:
        return ACTION_PHRASES[name]
    noun, _, verb = name.rpartition(".")
    noun = noun.replace("_", " ").replace(".", " ")
    verb = verb.replace("_", " ") or "act"
    if not noun:
        return verb, past_tense(verb)
    return f"{verb} {noun}", f"{past_tense(verb)} {noun}"


def money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}".strip()


def usd(cost: float, known: bool = True, model: str = "") -> str:
    """A call's cost at its real precision: two significant digits under a cent, cents above;
    an unpriced call's cost is unknown, never "$0"."""
    if not known:
        return f"cost unknown (no price for {model})" if model else "cost unknown"
    if cost == 0:
        return "$0"
    if cost < 0.01:
        return f"${cost:.2g}" if cost >= 1e-4 else f"${cost:.2e}"
    return f"${cost:,.2f}"


def humanize_key(key: str) -> str:
    return key.replace("_id", "").replace("_", " ").strip()


def parse_json(text: str) -> Any:
    if not text or text[0] not in "[{":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _plain(value: Any) -> str:
    """A scalar or short list in words; nested structures are summarized, never dumped."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list):
        items = [_plain(item) for item in value[:4] if not isinstance(item, (dict, list))]
        more = f" and {len(value) - 4} more" if len(value) > 4 else ""
        return ", ".join(items) + more if items else f"{len(value)} items"
    if isinstance(value, dict):
        return f"{len(value)} fields"
    return ""


def call_payload(text: str) -> str:
    """A tool call's arguments or result as the tool saw them.

    traceloop-sdk wraps a call's arguments as ``{"args": [...], "kwargs": {...}}`` and may send a
    result as a JSON-encoded string; both are unwrapped. Anything else is returned as it is.
    """
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    data = parse_json(text)
    if isinstance(data, dict) and set(data) == {"args", "kwargs"}:
        args, kwargs = data["args"], data["kwargs"]
        payload = kwargs if kwargs else (args[0] if isinstance(args, list) and len(args) == 1 else args)
        return payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return text


def describe_fields(text: str, limit: int = 4) -> str:
    """``{"order_id": "ORD-1", "amount": 42}`` -> ``order ORD-1, amount 42``; plain text is quoted short."""
    if text.startswith(ERASED_PREFIX):
        return ERASED
    data = parse_json(text)
    if data is None:
        return shorten(text, 120) if text and text[0] not in "[{" else ""
    if isinstance(data, dict):
        parts = [f"{humanize_key(key)} {_plain(value)}".strip() for key, value in list(data.items())[:limit]]
        more = f" and {len(data) - limit} more" if len(data) > limit else ""
        return ", ".join(part for part in parts if part) + more
    return _plain(data)


def shorten(text: str, limit: int = MAX_QUOTE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_text(text: str) -> str:
    """The human text inside GenAI message JSON (parts[].content, content); '' when there is none."""
    if text.startswith(ERASED_PREFIX):
        return ERASED
    data = parse_json(text)
    if data is None:
        return shorten(text) if text and text[0] not in "[{" else ""
    messages = data if isinstance(data, list) else [data]
    pieces: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(content)
        for part in message.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("content"), str):
                pieces.append(part["content"])
    return shorten(" ".join(pieces)) if pieces else ""


def tool_calls(text: str) -> list[str]:
    """Names of the tools a model chose to call in its output messages."""
    data = parse_json(text)
    messages = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    names: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        for part in message.get("parts") or []:
            if isinstance(part, dict) and part.get("type") == "tool_call" and part.get("name"):
                names.append(str(part["name"]))
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                name = call.get("name") or (call.get("function") or {}).get("name")
                if name:
                    names.append(str(name))
    return names


def records(refs: list[str]) -> str:
    """``["customer:CUS-1", "order:ORD-2"]`` -> ``customer CUS-1 and order ORD-2``."""
    words = [ref.replace(":", " ", 1) for ref in refs]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
