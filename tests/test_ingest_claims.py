"""An ingest token speaks only for its agents (issue 10): spans claiming another agent, service or
tenant are rejected with partial_success (or kept and marked, by a setting); the stored rows say
which token delivered them, and a sender cannot forge that."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from flightrec.collector.senders import PRINCIPAL_ATTRIBUTE
from tests.conftest import ServerProcess
from tests.otlp_helpers import make_request, make_span

ADMIN = "bootstrap-admin-token-for-claims-0123"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def recent_ns() -> int:
    return time.time_ns() - 60_000_000_000


def create(server: ServerProcess, **body: Any) -> str:
    body = {"kind": "agent", "roles": ["agent"], **body}
    created = httpx.post(f"{server.url}/api/principals", json=body, headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["token"]


@pytest.fixture(scope="module")
def claims_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("claims") / "srv", env={"FLIGHTREC_API_TOKEN": ADMIN}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def refund_token(claims_server: ServerProcess) -> str:
    return create(claims_server, name="refund-bot", agents=["refund_agent"])


def post(server: ServerProcess, request: ExportTraceServiceRequest, token: str | None) -> httpx.Response:
    headers = {**PROTOBUF, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(f"{server.url}/v1/traces", content=request.SerializeToString(), headers=headers, timeout=30)


def reply(response: httpx.Response) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.text
    parsed = ExportTraceServiceResponse()
    parsed.ParseFromString(response.content)
    return parsed


def stored(server: ServerProcess, trace_id: str) -> dict[str, dict]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as client:
        response = client.get(f"/api/traces/{trace_id}")
        if response.status_code == 404:
            return {}
        assert response.status_code == 200, response.text
        return {span["name"]: span for span in response.json()["spans"]}


def trace(*spans: tuple[str, dict[str, Any]], resource: dict[str, Any] | None = None) -> tuple[ExportTraceServiceRequest, str]:
    trace_id = os.urandom(16)
    start = recent_ns()
    made = [make_span(name, attrs, trace_id=trace_id, start_ns=start + index) for index, (name, attrs) in enumerate(spans)]
    return make_request(made, resource or {"service.name": "refund-svc"}), trace_id.hex()


def test_spans_claiming_another_agent_are_rejected_with_the_reason(claims_server: ServerProcess, refund_token: str) -> None:
    request, trace_id = trace(("own", {"gen_ai.agent.name": "refund_agent"}),
                              ("forged", {"gen_ai.agent.name": "billing_agent", "flightrec.human.decision": "approve"}),
                              ("no-agent", {"gen_ai.operation.name": "chat"}))
    answer = reply(post(claims_server, request, refund_token))
    assert answer.partial_success.rejected_spans == 2, answer
    message = answer.partial_success.error_message
    assert "'forged'" in message and "agent 'billing_agent' is not one refund-bot speaks for (refund_agent)" in message
    assert "'no-agent'" in message and "credited to its service.name" in message and "'refund-svc'" in message
    claims_server.wait_drained()
    spans = stored(claims_server, trace_id)
    assert set(spans) == {"own"}
    assert spans["own"]["resource_attributes"][PRINCIPAL_ATTRIBUTE] == "refund-bot"


def test_a_forged_sender_attribute_is_overwritten_or_removed(claims_server: ServerProcess, refund_token: str) -> None:
    request, trace_id = trace(("own", {"gen_ai.agent.name": "refund_agent"}),
                              resource={"service.name": "refund-svc", PRINCIPAL_ATTRIBUTE: "cfo-bot"})
    assert reply(post(claims_server, request, refund_token)).partial_success.rejected_spans == 0
    open_request, open_trace = trace(("anonymous", {"gen_ai.agent.name": "any_agent"}),
                                     resource={"service.name": "x", PRINCIPAL_ATTRIBUTE: "cfo-bot"})
    assert reply(post(claims_server, open_request, None)).partial_success.rejected_spans == 0  # ingest is open here
    claims_server.wait_drained()
    assert stored(claims_server, trace_id)["own"]["resource_attributes"][PRINCIPAL_ATTRIBUTE] == "refund-bot"
    assert PRINCIPAL_ATTRIBUTE not in stored(claims_server, open_trace)["anonymous"]["resource_attributes"]


def test_services_and_tenant_scope_what_a_token_may_send(claims_server: ServerProcess) -> None:
    token = create(claims_server, name="ledger-bot", agents=["ledger_agent"], services=["ledger-svc"], tenant="acme")
    request, trace_id = trace(("named", {"gen_ai.agent.name": "ledger_agent", "tenant.id": "acme"}),
                              ("unnamed", {"tenant.id": "acme"}),
                              ("other-tenant", {"gen_ai.agent.name": "ledger_agent", "tenant.id": "globex"}),
                              resource={"service.name": "ledger-svc"})
    answer = reply(post(claims_server, request, token))
    assert answer.partial_success.rejected_spans == 1
    assert "'other-tenant'" in answer.partial_success.error_message
    assert "tenant 'globex' is not ledger-bot's (acme)" in answer.partial_success.error_message
    other_service, _ = trace(("elsewhere", {"gen_ai.agent.name": "ledger_agent", "tenant.id": "acme"}),
                             resource={"service.name": "billing-svc"})
    refused = reply(post(claims_server, other_service, token)).partial_success
    assert refused.rejected_spans == 1 and "service 'billing-svc' is not one ledger-bot may send as" in refused.error_message
    claims_server.wait_drained()
    assert set(stored(claims_server, trace_id)) == {"named", "unnamed"}  # unnamed: credited to ledger-svc


def test_tokens_that_may_not_ingest_are_refused(claims_server: ServerProcess) -> None:
    person = httpx.post(f"{claims_server.url}/api/principals", json={"name": "sam", "roles": ["sre"]},
                        headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30).json()["token"]
    request, trace_id = trace(("x", {"gen_ai.agent.name": "refund_agent"}))
    forbidden = post(claims_server, request, person)
    assert forbidden.status_code == 403 and "is a person's" in forbidden.text
    unknown = post(claims_server, request, "frt_not-a-token")
    assert unknown.status_code == 401 and "not recognised" in unknown.text
    revoked_token = create(claims_server, name="gone-bot", agents=["refund_agent"])
    httpx.delete(f"{claims_server.url}/api/principals/gone-bot", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert post(claims_server, request, revoked_token).status_code == 401
    claims_server.wait_drained()
    assert stored(claims_server, trace_id) == {}


def test_the_sdk_exporters_send_as_the_token(claims_server: ServerProcess, refund_token: str) -> None:
    """The real OpenTelemetry exporters, HTTP and gRPC, with the agent's token in their headers."""
    ids = []
    for exporter in (OTLPSpanExporter(endpoint=f"{claims_server.url}/v1/traces",
                                      headers={"Authorization": f"Bearer {refund_token}"}),
                     GrpcSpanExporter(endpoint=f"127.0.0.1:{claims_server.grpc_port}", insecure=True,
                                      headers=(("authorization", f"Bearer {refund_token}"),))):
        provider = TracerProvider(resource=Resource.create({"service.name": "refund-svc"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("tests")
        with tracer.start_as_current_span("invoke_agent refund_agent", attributes={"gen_ai.agent.name": "refund_agent"}) as span:
            ids.append(format(span.get_span_context().trace_id, "032x"))
            with tracer.start_as_current_span("forged", attributes={"gen_ai.agent.name": "billing_agent"}):
                pass
        provider.shutdown()
    claims_server.wait_drained()
    for trace_id in ids:
        spans = stored(claims_server, trace_id)
        assert set(spans) == {"invoke_agent refund_agent"}, spans.keys()
        assert spans["invoke_agent refund_agent"]["resource_attributes"][PRINCIPAL_ATTRIBUTE] == "refund-bot"


def test_grpc_reports_rejected_claims(claims_server: ServerProcess, refund_token: str) -> None:
    request, _ = trace(("forged", {"gen_ai.agent.name": "billing_agent"}))
    with grpc.insecure_channel(f"127.0.0.1:{claims_server.grpc_port}") as channel:
        answer = TraceServiceStub(channel).Export(request, metadata=(("authorization", f"Bearer {refund_token}"),),
                                                  timeout=30)
        assert answer.partial_success.rejected_spans == 1 and "billing_agent" in answer.partial_success.error_message
        with pytest.raises(grpc.RpcError) as refused:
            TraceServiceStub(channel).Export(request, metadata=(("authorization", "Bearer frt_wrong"),), timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_mark_mode_keeps_foreign_spans_with_their_sender(make_server) -> None:
    server = make_server(env={"FLIGHTREC_API_TOKEN": ADMIN, "FLIGHTREC_FOREIGN_SPANS": "mark"}, name="mark")
    token = create(server, name="refund-bot", agents=["refund_agent"])
    request, trace_id = trace(("forged", {"gen_ai.agent.name": "billing_agent"}))
    assert reply(post(server, request, token)).partial_success.rejected_spans == 0
    server.wait_drained()
    span = stored(server, trace_id)["forged"]
    assert span["agent"] == "billing_agent" and span["resource_attributes"][PRINCIPAL_ATTRIBUTE] == "refund-bot"


def test_a_token_can_be_required_without_shared_tokens(make_server) -> None:
    server = make_server(env={"FLIGHTREC_API_TOKEN": ADMIN, "FLIGHTREC_REQUIRE_INGEST_TOKEN": "true"}, name="required")
    token = create(server, name="refund-bot", agents=["refund_agent"])
    request, _ = trace(("own", {"gen_ai.agent.name": "refund_agent"}))
    missing = post(server, request, None)
    assert missing.status_code == 401 and "missing ingest token" in missing.text
    assert reply(post(server, request, token)).partial_success.rejected_spans == 0
