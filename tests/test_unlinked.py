"""Finding the unlinked: a run with no object link is listed, found by its session or user, and an
auditor attaches it to the ticket by hand (audited), after which the ticket's story tells it."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.otlp_helpers import make_request, make_span

pytestmark = pytest.mark.slow
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def send(server: ServerProcess, spans: list) -> None:
    httpx.post(f"{server.url}/v1/traces", content=make_request(spans, {"service.name": "support-bot"}).SerializeToString(),
               headers=PROTOBUF, timeout=30).raise_for_status()


def test_an_unlinked_run_is_found_and_attached_by_hand(server: ServerProcess) -> None:
    now = time.time_ns() - 10**9
    trace = os.urandom(16)
    root = make_span("invoke_agent support-bot", {"gen_ai.operation.name": "invoke_agent",
                                                  "gen_ai.conversation.id": "conv-77", "user.id": "u-42"},
                     trace_id=trace, start_ns=now)
    child = make_span("chat gpt-4o-mini", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                                           "gen_ai.output.messages": "Refund approved for the broken blender."},
                      trace_id=trace, parent=root.span_id, start_ns=now + 1000)
    linked = make_span("other run", {"ticket.id": "TCK-OTHER"}, start_ns=now)
    send(server, [root, child, linked])
    server.wait_drained()
    trace_id = trace.hex()
    with server.client() as api:
        unlinked = api.get("/api/runs/unlinked", params={"hours": 1}).json()["items"]
        assert [run["trace_id"] for run in unlinked] == [trace_id]
        assert unlinked[0]["name"] == "invoke_agent support-bot" and unlinked[0]["spans"] == 2
        for value in ("conv-77", "u-42"):
            runs = api.get("/api/runs", params={"session": value}).json()["items"]
            assert [run["trace_id"] for run in runs] == [trace_id]
        hits = api.get("/api/search", params={"q": "conv-77"}).json()["items"]
        assert any(hit["kind"] == "trace" and hit["key"] == trace_id for hit in hits)

        for bad, status in (({"object": "TCK-9", "actor": "ana"}, 400), ({"object": "ticket:TCK-9", "actor": " "}, 400),
                            ({"object": "ticket:TCK-9", "actor": "ana", "trace_id": "ab" * 16}, 404),
                            ({"object": "ticket:TCK-9", "actor": "ana", "span_id": "cd" * 8}, 404)):
            response = api.post("/api/links", json={"trace_id": trace_id, **bad})
            assert response.status_code == status, response.text
        assert api.get("/api/objects/ticket/TCK-9/spans").json().get("spans", []) == []

        link = api.post("/api/links", json={"object": "Ticket:TCK-9", "trace_id": trace_id, "actor": "ana",
                                            "reason": "the customer quoted TCK-9 in chat"})
        assert link.status_code == 200, link.text
        assert link.json() == {"object": "ticket:TCK-9", "trace_id": trace_id, "span_id": root.span_id.hex(),
                               "source": "manual"}
        spans = api.get("/api/objects/ticket/TCK-9/spans").json()["spans"]
        assert {span["span_id"] for span in spans} == {root.span_id.hex(), child.span_id.hex()}  # descendants too
        story = api.get("/api/objects/ticket/TCK-9/story").json()
        assert "Refund approved for the broken blender." in str(story)
        assert api.get("/api/runs/unlinked", params={"hours": 1}).json()["items"] == []
        audit = api.get("/api/audit").json()["items"]
        [entry] = [e for e in audit if e["act"] == "link.add"]
        assert entry["actor"] == "ana" and entry["subject"] == "object:ticket:TCK-9"
        assert entry["details"]["trace"] == trace_id and "quoted TCK-9" in entry["details"]["reason"]
