"""Real instrumentation libraries, the real OpenAI client, a real server: the stories they make.

Four ecosystems instrument the same support agent, each with its own idioms:

- ``openinference``: openinference-instrumentation-openai; the agent and tool spans carry the
  OpenInference span kinds AGENT / TOOL, ``agent.name``, ``input.value`` / ``output.value``,
  ``session.id`` and ``metadata``, from the openinference-semantic-conventions constants;
- ``openllmetry``: opentelemetry-instrumentation-openai (OpenLLMetry) on its own; the agent and
  tool spans carry ``traceloop.span.kind`` / ``traceloop.entity.*`` from its
  opentelemetry-semantic-conventions-ai constants, the way its decorators write them;
- ``traceloop``: traceloop-sdk (OpenLLMetry's SDK): ``Traceloop.init``, ``@workflow``,
  ``@agent``, ``@tool`` and ``Traceloop.set_association_properties({"ticket_id": ...})``;
- ``genai``: opentelemetry-instrumentation-openai-v2 (OTel GenAI) with opentelemetry-util-genai's
  ``TelemetryHandler``: ``invoke_agent`` / ``execute_tool`` spans with ``gen_ai.agent.name``,
  ``gen_ai.tool.name``, ``gen_ai.tool.call.arguments`` / ``result``, ``gen_ai.conversation.id``.

Each library runs in a subprocess of its own (instrumentors patch the openai package, traceloop
sets the global tracer provider) and exports with the real OTLP/HTTP exporter to one
``flightrec serve`` for the whole module; the model is :mod:`tests.fake_openai`, a real HTTP
server on loopback. Each library runs three tickets: a normal run (LLM call → ``lookup_order``
run by the agent as a tool span → LLM call → the model's conclusion), an LLM error, and a tool
error. Each run is linked to its ticket the way the ecosystem would: the ``ticket.id`` alias on
the agent span; traceloop only through its ``ticket_id`` association property and one link rule.

Run as a program, this module is the agent: ``python -m tests.test_instrumentations LIBRARY CONFIG``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_openai import (
    ANSWER_USAGE,
    RESPONSE_MODELS,
    TOOL_CALL_USAGE,
    TOOL_NAME,
    FakeOpenAI,
    final_answer,
)

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("openinference", "openllmetry", "traceloop", "genai")
SCENARIOS = ("ok", "llm_error", "tool_error")

SERVICE = "support-bot"  # the process's service.name: never the agent
AGENT = "order_agent"
WORKFLOW = "support_ticket"  # traceloop's @workflow: a flow, not an agent
MODEL = "gpt-4o-mini"  # priced by genai-prices
UNKNOWN_MODEL = "acme-support-7b"  # priced by nobody
SYSTEM_PROMPT = "You are Acme's order support agent. Look an order up before you answer."
ORDERS = {
    "ORD-1042": {"order_id": "ORD-1042", "status": "shipped", "carrier": "UPS", "tracking": "1Z999AA10123456784"},
}
MISSING_ORDER = "ORD-0000"
TOOL_ERROR = f"order {MISSING_ORDER} not found in the order system"
LLM_ERRORS = {  # the API key that makes the fake model fail, and what the failure says
    "openinference": ("sk-fail-500", "The server had an error while processing your request"),
    "openllmetry": ("sk-fail-429", "Rate limit reached for gpt-4o-mini"),
    "traceloop": ("sk-fail-500", "The server had an error while processing your request"),
    "genai": ("sk-fail-429", "Rate limit reached for gpt-4o-mini"),
}
TOOLS = [{
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Look up an order's shipping status by its id.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}]


# -- the agent (run in a subprocess, one per library) ------------------------------------


def lookup_order(order_id: str) -> dict[str, str]:
    """The agent's tool: the order system."""
    try:
        return dict(ORDERS[order_id])
    except KeyError:
        raise LookupError(f"order {order_id} not found in the order system") from None


Execute = Callable[[str, str, str], dict[str, Any]]  # (tool name, tool call id, arguments JSON) -> result


def converse(client: Any, model: str, question: str, execute: Execute) -> str:
    """The agent loop: the model picks a tool, the agent runs it, the model answers from its result."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]
    first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    message = first.choices[0].message
    call = message.tool_calls[0]
    result = execute(call.function.name, call.id, call.function.arguments)
    messages.append({
        "role": "assistant", "content": message.content,
        "tool_calls": [{"id": call.id, "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments}}],
    })
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    final = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    return final.choices[0].message.content or ""


def _exporter(config: dict[str, Any]) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{config['otlp']}/v1/traces", timeout=10)


def _span_counter() -> Any:
    """A span processor that counts the spans ended per trace (what the server must end up holding)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class SpanCounter(SpanProcessor):
        def __init__(self) -> None:
            self.per_trace: dict[str, int] = {}

        def on_end(self, span: Any) -> None:
            trace_id = format(span.context.trace_id, "032x")
            self.per_trace[trace_id] = self.per_trace.get(trace_id, 0) + 1

    return SpanCounter()


def _provider(config: dict[str, Any], counter: Any) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE, "service.version": "1.4.0"}))
    provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
    provider.add_span_processor(counter)
    return provider


def _wait_for_collector(config: dict[str, Any], timeout_s: float = 120) -> None:
    """Until the server answers: agents import and instrument while it starts, then run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{config['otlp']}/api/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no collector at {config['otlp']}")


def _client(config: dict[str, Any], run: dict[str, Any]) -> Any:
    from openai import OpenAI

    # No retries: an error run is one failed call, and the module stays fast.
    return OpenAI(api_key=run["api_key"], base_url=config["openai"], max_retries=0, timeout=10)


def _trace_id(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def run_openinference(config: dict[str, Any], counter: Any) -> Iterator[dict[str, Any]]:
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from openinference.semconv.trace import OpenInferenceMimeTypeValues as Mime
    from openinference.semconv.trace import OpenInferenceSpanKindValues as Kind
    from openinference.semconv.trace import SpanAttributes as SA
    from opentelemetry.trace import Status, StatusCode

    provider = _provider(config, counter)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("acme.support")
    _wait_for_collector(config)
    for run in config["runs"]:
        metadata = json.dumps({"ticket_id": run["ticket"], "channel": "email"})

        def execute(name: str, call_id: str, arguments: str) -> dict[str, Any]:
            with tracer.start_as_current_span(name, attributes={
                SA.OPENINFERENCE_SPAN_KIND: Kind.TOOL.value, SA.TOOL_NAME: name, SA.TOOL_ID: call_id,
                SA.TOOL_PARAMETERS: json.dumps(TOOLS[0]["function"]["parameters"]),
                SA.INPUT_VALUE: arguments, SA.INPUT_MIME_TYPE: Mime.JSON.value,
            }) as tool_span:
                result = lookup_order(**json.loads(arguments))
                tool_span.set_attribute(SA.OUTPUT_VALUE, json.dumps(result))
                tool_span.set_attribute(SA.OUTPUT_MIME_TYPE, Mime.JSON.value)
                tool_span.set_status(Status(StatusCode.OK))
                return result

        outcome: dict[str, Any] = {"scenario": run["scenario"]}
        try:
            with (
                using_attributes(session_id=run["session"], metadata={"ticket_id": run["ticket"]}),
                tracer.start_as_current_span(AGENT, attributes={
                    SA.OPENINFERENCE_SPAN_KIND: Kind.AGENT.value, SA.AGENT_NAME: AGENT,
                    SA.INPUT_VALUE: run["question"], SA.INPUT_MIME_TYPE: Mime.TEXT.value,
                    SA.SESSION_ID: run["session"], SA.METADATA: metadata, "ticket.id": run["ticket"],
                }) as span,
            ):
                outcome["trace_id"] = _trace_id(span)
                answer = converse(_client(config, run), run["model"], run["question"], execute)
                span.set_attribute(SA.OUTPUT_VALUE, answer)
                span.set_attribute(SA.OUTPUT_MIME_TYPE, Mime.TEXT.value)
                span.set_status(Status(StatusCode.OK))
                outcome["answer"] = answer
        except Exception as error:  # noqa: BLE001 - the run failed; the spans say how
            outcome["error"] = f"{type(error).__name__}: {error}"
        yield outcome
    provider.force_flush()
    provider.shutdown()


def run_openllmetry(config: dict[str, Any], counter: Any) -> Iterator[dict[str, Any]]:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.semconv_ai import SpanAttributes as AI
    from opentelemetry.semconv_ai import TraceloopSpanKindValues as Kind
    from opentelemetry.trace import Status, StatusCode

    provider = _provider(config, counter)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("acme.support")
    _wait_for_collector(config)
    for run in config["runs"]:

        def execute(name: str, call_id: str, arguments: str) -> dict[str, Any]:
            kwargs = json.loads(arguments)
            # As traceloop's @tool writes them: "<name>.tool", entity input {"args", "kwargs"}.
            with tracer.start_as_current_span(f"{name}.tool", attributes={
                AI.TRACELOOP_SPAN_KIND: Kind.TOOL.value, AI.TRACELOOP_ENTITY_NAME: name,
                AI.TRACELOOP_ENTITY_PATH: AGENT, AI.TRACELOOP_ENTITY_INPUT: json.dumps({"args": [], "kwargs": kwargs}),
            }) as tool_span:
                result = lookup_order(**kwargs)
                tool_span.set_attribute(AI.TRACELOOP_ENTITY_OUTPUT, json.dumps(result))
                return result

        outcome: dict[str, Any] = {"scenario": run["scenario"]}
        try:
            with tracer.start_as_current_span(f"{AGENT}.agent", attributes={
                AI.TRACELOOP_SPAN_KIND: Kind.AGENT.value, AI.TRACELOOP_ENTITY_NAME: AGENT,
                AI.TRACELOOP_ENTITY_INPUT: json.dumps({"args": [run["question"]], "kwargs": {}}),
                f"{AI.TRACELOOP_ASSOCIATION_PROPERTIES}.session_id": run["session"], "ticket.id": run["ticket"],
            }) as span:
                outcome["trace_id"] = _trace_id(span)
                answer = converse(_client(config, run), run["model"], run["question"], execute)
                span.set_attribute(AI.TRACELOOP_ENTITY_OUTPUT, json.dumps(answer))
                span.set_status(Status(StatusCode.OK))
                outcome["answer"] = answer
        except Exception as error:  # noqa: BLE001
            outcome["error"] = f"{type(error).__name__}: {error}"
        yield outcome
    provider.force_flush()
    provider.shutdown()


def run_traceloop(config: dict[str, Any], counter: Any) -> Iterator[dict[str, Any]]:
    from opentelemetry import trace
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import agent, tool, workflow
    from traceloop.sdk.instruments import Instruments

    Traceloop.init(app_name=SERVICE, api_endpoint=config["otlp"], telemetry_enabled=False,
                   instruments={Instruments.OPENAI}, resource_attributes={"service.version": "1.4.0"})
    provider = trace.get_tracer_provider()
    provider.add_span_processor(counter)  # type: ignore[attr-defined]

    current: dict[str, Any] = {}  # this run's client and model: not arguments, so not in the spans

    @tool(name=TOOL_NAME)
    def lookup_order_tool(order_id: str) -> dict[str, str]:
        return lookup_order(order_id)

    @agent(name=AGENT)
    def order_agent(question: str) -> str:
        return converse(current["client"], current["model"], question,
                        lambda name, call_id, arguments: lookup_order_tool(**json.loads(arguments)))

    @workflow(name=WORKFLOW)
    def handle_ticket(ticket: str, session: str, question: str) -> str:
        Traceloop.set_association_properties({"ticket_id": ticket, "session_id": session})
        span = trace.get_current_span()
        current["trace_id"] = _trace_id(span)
        return order_agent(question)

    _wait_for_collector(config)
    for run in config["runs"]:
        current.update(client=_client(config, run), model=run["model"], trace_id="")
        outcome: dict[str, Any] = {"scenario": run["scenario"]}
        try:
            outcome["answer"] = handle_ticket(run["ticket"], run["session"], run["question"])
        except Exception as error:  # noqa: BLE001
            outcome["error"] = f"{type(error).__name__}: {error}"
        outcome["trace_id"] = current["trace_id"]
        yield outcome
    provider.force_flush()  # type: ignore[attr-defined]


def run_genai(config: dict[str, Any], counter: Any) -> Iterator[dict[str, Any]]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.util.genai.handler import TelemetryHandler
    from opentelemetry.util.genai.types import InputMessage, OutputMessage, Text

    provider = _provider(config, counter)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    handler = TelemetryHandler(tracer_provider=provider)
    _wait_for_collector(config)
    for run in config["runs"]:

        def execute(name: str, call_id: str, arguments: str) -> dict[str, Any]:
            with handler.tool(name, tool_call_id=call_id, tool_type="function") as invocation:
                invocation.arguments = json.loads(arguments)
                result = lookup_order(**invocation.arguments)
                invocation.tool_result = result
                return result

        outcome: dict[str, Any] = {"scenario": run["scenario"]}
        try:
            with handler.invoke_local_agent(agent_name=AGENT, request_model=run["model"]) as invocation:
                invocation.conversation_id = run["session"]
                invocation.attributes["ticket.id"] = run["ticket"]
                invocation.input_messages = [InputMessage(role="user", parts=[Text(content=run["question"])])]
                outcome["trace_id"] = _trace_id(invocation.span)
                answer = converse(_client(config, run), run["model"], run["question"], execute)
                invocation.output_messages = [OutputMessage(role="assistant", parts=[Text(content=answer)],
                                                            finish_reason="stop")]
                outcome["answer"] = answer
        except Exception as error:  # noqa: BLE001
            outcome["error"] = f"{type(error).__name__}: {error}"
        yield outcome
    provider.force_flush()
    provider.shutdown()


RUNNERS = {"openinference": run_openinference, "openllmetry": run_openllmetry, "traceloop": run_traceloop,
           "genai": run_genai}

# What each library's process needs in its environment (content capture is opt-in where it is).
LIBRARY_ENV: dict[str, dict[str, str]] = {
    "openinference": {},
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "true"},
    "traceloop": {"TRACELOOP_TRACE_CONTENT": "true", "TRACELOOP_TELEMETRY": "false",
                  "TRACELOOP_METRICS_ENABLED": "false", "TRACELOOP_LOGGING_ENABLED": "false"},
    "genai": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
              "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only"},
}


def agent_main(library: str, config_json: str) -> None:
    """The subprocess: run the library's agent over every configured ticket; one JSON line out."""
    config = json.loads(config_json)
    counter = _span_counter()
    outcomes = list(RUNNERS[library](config, counter))
    for outcome in outcomes:
        outcome["spans"] = counter.per_trace.get(outcome.get("trace_id", ""), 0)
    print(json.dumps(outcomes), flush=True)


# -- the tests -------------------------------------------------------------------------


@dataclass
class Run:
    library: str
    scenario: str
    ticket: str
    session: str
    model: str
    trace_id: str
    spans: int
    answer: str = ""
    error: str = ""


def ticket_for(library: str, scenario: str) -> str:
    return f"TCK-{library.upper()}-{scenario.replace('_', '-').upper()}"


def plan(library: str) -> list[dict[str, Any]]:
    """The three tickets one library's agent works on."""
    fail_key, _ = LLM_ERRORS[library]
    runs = []
    for scenario in SCENARIOS:
        order = MISSING_ORDER if scenario == "tool_error" else "ORD-1042"
        runs.append({
            "scenario": scenario,
            "ticket": ticket_for(library, scenario),
            "session": f"conv-{library}-{scenario}",
            "question": f"Hi, where is my order {order}? It has been a week.",
            # the tool-error run uses a model no price table knows: its cost is unknown, not $0
            "model": UNKNOWN_MODEL if scenario == "tool_error" else MODEL,
            "api_key": fail_key if scenario == "llm_error" else "sk-test-ok",
        })
    return runs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server, one fake model; every library's agent run once, concurrently, each in its own process."""
    from tests.conftest import ServerProcess

    base = tmp_path_factory.mktemp("instrumentations")
    # The one link rule a traceloop user adds (the example): the association property names the ticket.
    rules = base / "rules.toml"
    rules.write_text('[[links]]\nattribute = "traceloop.association.properties.ticket_id"\ntype = "ticket"\n')
    server = ServerProcess(base / "srv", args=["--rules", str(rules)])
    fake = FakeOpenAI().start()
    procs: dict[str, subprocess.Popen] = {}
    try:
        # The agents import and instrument while the server starts (both take seconds); each waits for it.
        for library in LIBRARIES:
            config = {"otlp": server.url, "openai": fake.base_url, "runs": plan(library)}
            env = {**os.environ, **LIBRARY_ENV[library], "PYTHONPATH": str(ROOT)}
            with open(base / f"{library}.out", "wb") as out, open(base / f"{library}.err", "wb") as err:
                procs[library] = subprocess.Popen(
                    [sys.executable, "-m", "tests.test_instrumentations", library, json.dumps(config)],
                    cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                )
        server.start()
        runs: dict[tuple[str, str], Run] = {}
        for library, proc in procs.items():
            proc.wait(timeout=180)
            out, err = (base / f"{library}.out").read_text(), (base / f"{library}.err").read_text()
            assert proc.returncode == 0, f"{library} agent exited {proc.returncode}:\n{err[-4000:]}"
            by_scenario = {run["scenario"]: run for run in plan(library)}
            for outcome in json.loads(out.strip().splitlines()[-1]):
                planned = by_scenario[outcome["scenario"]]
                assert outcome.get("trace_id") and outcome["spans"], f"{library}: no spans for {outcome}\n{err[-3000:]}"
                runs[(library, outcome["scenario"])] = Run(
                    library, outcome["scenario"], planned["ticket"], planned["session"], planned["model"],
                    outcome["trace_id"], outcome["spans"], outcome.get("answer", ""), outcome.get("error", ""),
                )
        server.wait_drained()
        with server.client() as client:
            for run in runs.values():
                _wait_linked(client, run)
                if run.model == MODEL:
                    _wait_priced(client, run)
            yield {"server": server, "fake": fake, "client": client, "runs": runs}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        fake.stop()
        server.stop()


def _wait_linked(client: httpx.Client, run: Run, timeout_s: float = 30) -> None:
    """Until every span the agent ended is stored and linked to its ticket (links are resolved after ingest)."""
    deadline = time.monotonic() + timeout_s
    seen = -1
    while time.monotonic() < deadline:
        response = client.get(f"/api/objects/ticket/{run.ticket}/spans")
        if response.status_code == 200:
            seen = len(response.json()["spans"])
            if seen >= run.spans:
                return
        time.sleep(0.05)
    raise AssertionError(f"{run.library}/{run.scenario}: {seen} of {run.spans} spans linked to ticket {run.ticket}")


def _wait_priced(client: httpx.Client, run: Run, timeout_s: float = 30) -> None:
    """Until the rates resolver has priced the run's LLM calls (it prices stored calls every second,
    so a story read right after ingest may still say "cost unknown")."""
    deadline = time.monotonic() + timeout_s
    unpriced: list[str] = ["(not read)"]
    while time.monotonic() < deadline:
        response = client.get(f"/api/traces/{run.trace_id}")
        if response.status_code == 200:
            unpriced = [s["name"] for s in response.json()["spans"] if s["operation"] == "llm" and not s["cost_known"]]
            if not unpriced:
                return
        time.sleep(0.05)
    raise AssertionError(f"{run.library}/{run.scenario}: LLM calls still unpriced: {unpriced}")


class Api:
    """The server's read API, each answer fetched once: every run is complete before the first test reads it."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self._answers: dict[str, Any] = {}

    def json(self, path: str) -> Any:
        if path not in self._answers:
            response = self._client.get(path)
            assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
            self._answers[path] = response.json()
        return copy.deepcopy(self._answers[path])


@pytest.fixture(scope="module")
def client(world: dict[str, Any]) -> Api:
    return Api(world["client"])


def get_run(world: dict[str, Any], library: str, scenario: str) -> Run:
    return world["runs"][(library, scenario)]


def story(client: Api, run: Run) -> dict[str, Any]:
    return client.json(f"/api/objects/ticket/{run.ticket}/story")


def trace_spans(client: Api, run: Run) -> list[dict[str, Any]]:
    return client.json(f"/api/traces/{run.trace_id}")["spans"]


def steps(told: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [step for step in told["steps"] if step["kind"] == kind]


def step_text(step: dict[str, Any]) -> str:
    """A step as a person reads it: the sentence and the facts behind it."""
    return " ".join([step["sentence"], *step["details"].values()])


def expected_cost(model: str, tokens_in: int, tokens_out: int) -> float:
    """What the genai-prices package says the call cost (OpenAI's price for the model, today)."""
    from genai_prices import Usage, calc_price

    price = calc_price(Usage(input_tokens=tokens_in, output_tokens=tokens_out), model_ref=model, provider_id="openai")
    return float(price.total_price)




def libraries(known_wrong: dict[str, str] | None = None) -> list[Any]:
    """Every library as a parameter; those whose story is known wrong here marked strict xfail with the reason."""
    wrong = known_wrong or {}
    return [pytest.param(lib, marks=pytest.mark.xfail(strict=True, reason=wrong[lib])) if lib in wrong else lib
            for lib in LIBRARIES]


def library_scenarios(known_wrong: dict[str, str]) -> list[Any]:
    return [pytest.param(lib, scenario, marks=pytest.mark.xfail(strict=True, reason=known_wrong[lib]))
            if lib in known_wrong else pytest.param(lib, scenario)
            for lib in LIBRARIES for scenario in SCENARIOS]


# -- the premise -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_the_agents_ran_against_the_fake_model(world: dict[str, Any], library: str) -> None:
    """The real client reached the fake model through each instrumentation, and the agent concluded from the tool."""
    assert get_run(world, library, "ok").error == ""
    assert get_run(world, library, "ok").answer == final_answer(ORDERS["ORD-1042"])
    assert LLM_ERRORS[library][1] in get_run(world, library, "llm_error").error
    assert TOOL_ERROR in get_run(world, library, "tool_error").error
    keys = [request["api_key"] for request in world["fake"].received]
    assert keys.count(LLM_ERRORS[library][0]) >= 1


# -- who ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("library", "scenario"), library_scenarios({}))
def test_story_names_the_agent(client: Api, world: dict[str, Any], library: str, scenario: str) -> None:
    """The agent is order_agent: not the service (support-bot), not traceloop's workflow (support_ticket)."""
    told = story(client, get_run(world, library, scenario))
    assert told["agents"] == [AGENT], told["agents"]
    assert {step["agent"] for step in told["steps"]} == {AGENT}, [(s["kind"], s["agent"]) for s in told["steps"]]
    assert AGENT in told["outcome"], told["outcome"]
    assert SERVICE not in told["outcome"] and WORKFLOW not in told["outcome"], told["outcome"]
    assert SERVICE not in told["summary"], told["summary"]


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_story_keeps_the_session(client: Api, world: dict[str, Any], library: str) -> None:
    """The conversation id each library sent (session.id, gen_ai.conversation.id, the session_id association)."""
    run = get_run(world, library, "ok")
    (agent_step,) = steps(story(client, run), "agent")
    assert agent_step["details"].get("session") == run.session, agent_step


# -- the normal run --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_story_tells_both_llm_calls(client: Api, world: dict[str, Any], library: str) -> None:
    """Model and tokens of each call, the tool the model chose, and the model's conclusion, in order."""
    run = get_run(world, library, "ok")
    told = story(client, run)
    kinds = [s["kind"] for s in told["steps"] if s["kind"] in ("llm", "tool")]
    assert kinds == ["llm", "tool", "llm"], [s["sentence"] for s in told["steps"]]
    first, second = steps(told, "llm")
    for step, usage in ((first, TOOL_CALL_USAGE), (second, ANSWER_USAGE)):
        assert step["details"].get("model") == RESPONSE_MODELS[MODEL], step
        assert step["details"].get("input_tokens") == str(usage["prompt_tokens"]), step
        assert step["details"].get("output_tokens") == str(usage["completion_tokens"]), step
    assert TOOL_NAME in first["sentence"], first["sentence"]  # the model chose the tool
    assert final_answer(ORDERS["ORD-1042"]) in second["sentence"], second["sentence"]  # and then concluded


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_story_tells_the_tool_call(client: Api, world: dict[str, Any], library: str) -> None:
    """The tool step: lookup_order, with the arguments the model chose and what the order system answered."""
    told = story(client, get_run(world, library, "ok"))
    (step,) = steps(told, "tool")
    assert step["details"].get("tool") == TOOL_NAME, step
    assert "ORD-1042" in step["details"].get("arguments", ""), step
    assert ORDERS["ORD-1042"]["tracking"] in step["details"].get("result", ""), step
    assert "ORD-1042" in step["sentence"] and ORDERS["ORD-1042"]["tracking"] in step["sentence"], step["sentence"]


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_normal_run_completed(client: Api, world: dict[str, Any], library: str) -> None:
    run = get_run(world, library, "ok")
    told = story(client, run)
    assert told["status"] == "completed", told["outcome"]
    assert "completed" in told["outcome"], told["outcome"]
    assert told["traces"] == [run.trace_id]
    assert not [s for s in told["steps"] if s["severity"] in ("warning", "critical")], told["steps"]
    assert "fail" not in step_text(steps(told, "tool")[0]), steps(told, "tool")


# -- costs -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_llm_calls_are_priced_from_tokens(client: Api, world: dict[str, Any], library: str) -> None:
    """gpt-4o-mini is priced by genai-prices: each call costs its tokens at the package's price; nothing twice."""
    run = get_run(world, library, "ok")
    spans = trace_spans(client, run)
    llm = sorted((s for s in spans if s["operation"] == "llm"), key=lambda s: s["start_time"])
    assert [(s["input_tokens"], s["output_tokens"]) for s in llm] == [
        (TOOL_CALL_USAGE["prompt_tokens"], TOOL_CALL_USAGE["completion_tokens"]),
        (ANSWER_USAGE["prompt_tokens"], ANSWER_USAGE["completion_tokens"]),
    ]
    for span in llm:
        expected = expected_cost(RESPONSE_MODELS[MODEL], span["input_tokens"], span["output_tokens"])
        assert expected > 0
        assert span["cost_known"] and span["cost_usd"] == pytest.approx(expected, rel=1e-6), (span, expected)
    for step in steps(story(client, run), "llm"):
        assert step["details"].get("cost_usd", "").startswith("$") and step["details"]["cost_usd"] != "$0", step
    others = [(s["name"], s["cost_usd"]) for s in spans if s["operation"] != "llm"]
    assert all(cost == 0 for _, cost in others), others


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_unknown_model_cost_is_unknown_not_zero(client: Api, world: dict[str, Any], library: str) -> None:
    """A model no price table knows: its tokens are kept and its cost is unknown, never $0."""
    run = get_run(world, library, "tool_error")
    (llm,) = [s for s in trace_spans(client, run) if s["operation"] == "llm"]
    assert llm["model"] == UNKNOWN_MODEL, llm["model"]
    assert (llm["input_tokens"], llm["output_tokens"]) == (TOOL_CALL_USAGE["prompt_tokens"],
                                                           TOOL_CALL_USAGE["completion_tokens"])
    assert llm["cost_known"] is False and llm["cost_usd"] == 0, llm
    (step,) = steps(story(client, run), "llm")
    assert "unknown" in step["details"].get("cost_usd", "") and "$" not in step["details"]["cost_usd"], step


# -- an LLM error ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_llm_error_story(client: Api, world: dict[str, Any], library: str) -> None:
    """The model's API failed (500 / 429): the LLM step says so with the API's message, and the run failed."""
    told = story(client, get_run(world, library, "llm_error"))
    assert told["status"] == "failed", (told["status"], told["outcome"])
    assert "failed" in told["outcome"] and "completed" not in told["outcome"], told["outcome"]
    (call,) = steps(told, "llm")
    assert call["severity"] in ("warning", "critical"), call
    assert LLM_ERRORS[library][1] in call["sentence"], call["sentence"]
    assert "input_tokens" not in call["details"] and "cost_usd" not in call["details"], call  # nothing was spent
    assert not steps(told, "tool"), "no tool ran"


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_llm_error_names_the_model(client: Api, world: dict[str, Any], library: str) -> None:
    """Which model failed: the one the agent asked for."""
    (call,) = steps(story(client, get_run(world, library, "llm_error")), "llm")
    assert MODEL in call["sentence"] and call["details"].get("model", "").startswith(MODEL), call


# -- a tool error ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_tool_error_story(client: Api, world: dict[str, Any], library: str) -> None:
    """The order system did not know the order: the tool step says so, the agent stopped, and the run failed."""
    told = story(client, get_run(world, library, "tool_error"))
    assert told["status"] == "failed", (told["status"], told["outcome"])
    assert "failed" in told["outcome"] and "completed" not in told["outcome"], told["outcome"]
    (step,) = steps(told, "tool")
    assert step["details"].get("tool") == TOOL_NAME, step
    assert step["severity"] in ("warning", "critical"), step
    assert TOOL_ERROR in step["sentence"], step["sentence"]
    assert "result" not in step["details"], step
    assert len(steps(told, "llm")) == 1, "the agent stopped when the tool failed"


@pytest.mark.slow
@pytest.mark.parametrize("library", libraries())
def test_failed_tool_step_names_its_arguments(client: Api, world: dict[str, Any], library: str) -> None:
    """Which order was not found: the arguments of the failed call."""
    (step,) = steps(story(client, get_run(world, library, "tool_error")), "tool")
    assert MISSING_ORDER in step["details"].get("arguments", ""), step
    assert MISSING_ORDER in step["sentence"], step["sentence"]


# -- traceloop's association property --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_traceloop_association_property_names_the_ticket(client: Api, world: dict[str, Any],
                                                         scenario: str) -> None:
    """Traceloop.set_association_properties({"ticket_id": ...}) lands on the workflow span and every span under it.

    The run sets no ``ticket.id``: the one link rule the server was started with
    (``traceloop.association.properties.ticket_id`` -> ticket) links it.
    """
    run = get_run(world, "traceloop", scenario)
    spans = trace_spans(client, run)
    assert len(spans) == run.spans
    key = "traceloop.association.properties.ticket_id"
    assert {s["attributes"].get(key) for s in spans} == {run.ticket}, [(s["name"], s["attributes"].get(key)) for s in spans]
    (root,) = [s for s in spans if not s["parent_span_id"]]
    assert root["attributes"].get("traceloop.span.kind") == "workflow", root["attributes"]
    assert "ticket.id" not in root["attributes"] and f"ticket:{run.ticket}" in root["objects"], root["objects"]
    linked = {s["span_id"] for s in client.json(f"/api/objects/ticket/{run.ticket}/spans")["spans"]}
    assert linked == {s["span_id"] for s in spans}  # the link covers the workflow and all its descendants


if __name__ == "__main__":
    agent_main(sys.argv[1], sys.argv[2])
