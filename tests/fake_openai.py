"""A small, real OpenAI-compatible HTTP server on 127.0.0.1 for tests: ``POST /v1/chat/completions``.

Stdlib only (``http.server`` in a thread), non-streaming, scripted by the conversation it is
sent, so any number of agents in any number of processes can share one server:

- a conversation without a tool result yet: the model calls ``lookup_order`` with the order
  id the user named (``{"order_id": "ORD-1042"}``), ``finish_reason="tool_calls"``;
- a conversation ending in a tool result: the model answers from that result
  (:func:`final_answer`), ``finish_reason="stop"``;
- an API key ``sk-fail-500`` or ``sk-fail-429``: the OpenAI error body and status a real
  outage or rate limit answers with (the 429 with ``retry-after``).

Every answer carries usage (:data:`TOOL_CALL_USAGE`, :data:`ANSWER_USAGE`) and names the model
as OpenAI does: a dated snapshot for an alias it knows (:data:`RESPONSE_MODELS`), else the
model as asked.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

TOOL_NAME = "lookup_order"
TOOL_CALL_USAGE = {"prompt_tokens": 61, "completion_tokens": 17}
ANSWER_USAGE = {"prompt_tokens": 104, "completion_tokens": 23}
RESPONSE_MODELS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
ORDER_ID = re.compile(r"\bORD-\w+")

ERRORS: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {
    "sk-fail-500": (
        500,
        {"message": "The server had an error while processing your request. Sorry about that!",
         "type": "server_error", "param": None, "code": None},
        {},
    ),
    "sk-fail-429": (
        429,
        {"message": "Rate limit reached for gpt-4o-mini in organization org-test on tokens per min (TPM): "
                    "Limit 200000, Used 200000, Requested 61. Please try again in 20s.",
         "type": "tokens", "param": None, "code": "rate_limit_exceeded"},
        {"retry-after": "20", "x-ratelimit-remaining-tokens": "0"},
    ),
}


def final_answer(result: dict[str, Any]) -> str:
    """What the model concludes from a ``lookup_order`` result."""
    return (f"Your order {result['order_id']} has {result['status']} with {result['carrier']}; "
            f"the tracking number is {result['tracking']}.")


def _usage(counts: dict[str, int]) -> dict[str, Any]:
    return {
        **counts,
        "total_tokens": counts["prompt_tokens"] + counts["completion_tokens"],
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def completion(request: dict[str, Any]) -> dict[str, Any]:
    """The scripted answer to one chat completion request."""
    messages = request.get("messages") or []
    model = RESPONSE_MODELS.get(request.get("model", ""), request.get("model", ""))
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        message: dict[str, Any] = {"role": "assistant", "content": final_answer(json.loads(last["content"])),
                                   "refusal": None, "annotations": []}
        finish, usage = "stop", ANSWER_USAGE
    else:
        asked = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
        found = ORDER_ID.search(asked)
        arguments = json.dumps({"order_id": found.group(0) if found else "unknown"})
        message = {
            "role": "assistant", "content": None, "refusal": None, "annotations": [],
            "tool_calls": [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                            "function": {"name": TOOL_NAME, "arguments": arguments}}],
        }
        finish, usage = "tool_calls", TOOL_CALL_USAGE
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(usage),
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"Invalid URL (POST {self.path})", "type": "invalid_request_error",
                                       "param": None, "code": None}})
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(400, {"error": {"message": "We could not parse the JSON body of your request.",
                                       "type": "invalid_request_error", "param": None, "code": None}})
            return
        key = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self.server.lock:
            self.server.received.append({"api_key": key, "body": request})
        if key in ERRORS:
            status, error, headers = ERRORS[key]
            self._send(status, {"error": error}, headers)
            return
        try:
            answer = completion(request)
        except (KeyError, TypeError, ValueError) as error:  # a conversation the script does not know
            self._send(400, {"error": {"message": f"fake model cannot answer: {error!r}",
                                       "type": "invalid_request_error", "param": None, "code": None}})
            return
        self._send(200, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: list[dict[str, Any]]
    lock: threading.Lock


class FakeOpenAI:
    """The server, started on a free loopback port; a context manager."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.received = []
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every request body with the API key it came with, in arrival order."""
        with self._server.lock:
            return list(self._server.received)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
