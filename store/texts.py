"""Input and output text of a span, read from its stored attributes when a story is told.

Text is not a column: it stays once on disk, in the attribute map it came in, and is
assembled here from whichever convention carried it (GenAI message JSON, OpenInference's
flattened ``llm.*_messages.N.*``, ``input.value``/``output.value``, ``traceloop.entity.*``,
legacy ``gen_ai.prompt.N``). Only the spans a story reads pay for it.
"""

from __future__ import annotations

import json
from typing import Any

from flightrec.store import conventions as cv


def _first_text(attrs: dict[str, str], field: str) -> str:
    for key in cv.FIELD_SOURCES[field]:
        value = attrs.get(key)
        if value:
            return value
    return ""


def _message_json(attrs: dict[str, str], prefix: str) -> str:
    """Flattened OpenInference messages (``llm.input_messages.N.message.*``) as GenAI message JSON.

    Each message becomes ``{"role", "parts": [...]}`` with text parts, the tool calls the model chose
    (``tool_call`` parts: id, name, arguments) and tool results (``tool_call_response``), the shape of
    ``gen_ai.input.messages`` / ``gen_ai.output.messages``.
    """
    messages: dict[int, dict[str, Any]] = {}
    plen = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[plen:].partition(".")
        if not index.isdigit() or not rest.startswith("message."):
            continue
        message = messages.setdefault(int(index), {"fields": {}, "calls": {}, "contents": {}})
        if rest.startswith(cv.OI_TOOL_CALLS + "."):
            call, _, field = rest[len(cv.OI_TOOL_CALLS) + 1:].partition(".")
            if call.isdigit():
                message["calls"].setdefault(int(call), {})[field] = value
        elif rest.startswith(cv.OI_CONTENTS + "."):
            part, _, field = rest[len(cv.OI_CONTENTS) + 1:].partition(".")
            if part.isdigit():
                message["contents"].setdefault(int(part), {})[field] = value
        else:
            message["fields"][rest] = value
    out = []
    for index in sorted(messages):
        message = messages[index]
        fields = message["fields"]
        parts: list[dict[str, Any]] = []
        content = fields.get(cv.OI_CONTENT, "")
        call_id = fields.get(cv.OI_TOOL_CALL_ID, "")
        if call_id:
            parts.append({"type": "tool_call_response", "id": call_id, "response": content})
        elif content:
            parts.append({"type": "text", "content": content})
        for part_index in sorted(message["contents"]):
            text = message["contents"][part_index].get("message_content.text", "")
            if text:
                parts.append({"type": "text", "content": text})
        for call_index in sorted(message["calls"]):
            call = message["calls"][call_index]
            name = call.get(cv.OI_CALL_NAME, "")
            if name:
                arguments: Any = call.get(cv.OI_CALL_ARGUMENTS, "")
                try:
                    arguments = json.loads(arguments) if arguments else {}
                except ValueError:
                    pass
                parts.append({"type": "tool_call", "id": call.get(cv.OI_CALL_ID, ""), "name": name,
                              "arguments": arguments})
        entry: dict[str, Any] = {"role": fields.get(cv.OI_ROLE, ""), "parts": parts}
        if fields.get(cv.OI_NAME):
            entry["name"] = fields[cv.OI_NAME]
        out.append(entry)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False) if out else ""


def text_of(attrs: dict[str, str], field: str, operation: str = "") -> str:
    """Input or output text.

    A tool span: the call's arguments / result (``gen_ai.tool.call.*``, ``input.value``,
    ``traceloop.entity.*``). Otherwise: the GenAI message attribute, else OpenInference's
    flattened messages as GenAI message JSON, else ``input.value`` / ``traceloop.entity.*``,
    else the legacy flattened ``gen_ai.prompt.N`` / ``gen_ai.completion.N`` contents joined.
    """
    if operation == "tool":
        for key in cv.TOOL_TEXT_SOURCES[field]:
            if attrs.get(key):
                return attrs[key]
    structured = attrs.get(cv.FIELD_SOURCES[field][0])
    if structured:
        return structured
    prefix = cv.OI_MESSAGE_PREFIXES[field]
    if prefix + "0.message.role" in attrs or prefix + "0.message.content" in attrs:
        messages = _message_json(attrs, prefix)
        if messages:
            return messages
    value = _first_text(attrs, field)
    if value:
        return value
    prefix = cv.TEXT_PREFIXES[field]
    keys = [key for key in attrs if key.startswith(prefix) and key.endswith(".content")]
    return "\n".join(attrs[key] for key in sorted(keys)) if keys else ""
