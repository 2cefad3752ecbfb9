"""The one HTTP client of the dashboards: every page reads the Flight Recorder API through here."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import httpx
import streamlit as st

from flightrec.dashboards import identity
from flightrec.paths import path_segment

DEFAULT_API_URL = "http://127.0.0.1:4318"
TTL_S = 30


class ApiError(Exception):
    """The API could not be reached or refused the request; ``message`` says what to do.

    ``message`` is plain text, never Markdown: it may quote the server, which may quote an agent.
    """

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail  # the API's own words, when it gave any


def api_url() -> str:
    return os.environ.get("FLIGHTREC_API_URL", DEFAULT_API_URL).rstrip("/")


TOKEN_KEY = "signed_in_token"


def _api_token() -> str | None:
    """The token typed in this browser session, else the ID token of a sign-in with the identity provider,
    else the one the UI was started with."""
    return st.session_state.get(TOKEN_KEY) or identity.id_token() or os.environ.get("FLIGHTREC_API_TOKEN") or None


def me() -> dict[str, Any]:
    """Who the dashboards act as: ``{name, kind, roles}`` (kind ``local``: no sign-in on this API).

    Raises ApiError 401 when the API wants a sign-in. Never cached: a token revoked a moment ago sends the
    page back to sign-in on its next run, not a cache lifetime later.
    """
    return _send(api_url(), _api_token(), "GET", "/api/whoami").json()


def sign_in(token: str) -> dict[str, Any]:
    """Check a token with the API and keep it for this browser session; ApiError when refused."""
    principal = _send(api_url(), token.strip(), "GET", "/api/whoami").json()
    st.session_state[TOKEN_KEY] = token.strip()
    return principal


def sign_out() -> None:
    st.session_state.pop(TOKEN_KEY, None)
    clear_cache()


@st.cache_resource(show_spinner=False)
def _client(base_url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(30, connect=3))


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    if isinstance(detail, list):  # FastAPI's validation errors: say which field and why
        detail = "; ".join(f"{'.'.join(str(part) for part in item.get('loc', [])[1:])}: {item.get('msg', '')}"
                           if isinstance(item, dict) else str(item) for item in detail)
    return str(detail or "")


def _explain(response: httpx.Response, base_url: str) -> str:
    detail = _detail(response)
    if response.status_code == 401:
        how = "with your identity provider or your token" if identity.providers()[0] else "with your token"
        return (f"The API at {base_url} refused the token{f' ({detail})' if detail else ''}: sign in again {how} "
                "(flightrec tokens create), or set FLIGHTREC_API_TOKEN to the server's API token.")
    if response.status_code >= 500:
        return f"The API at {base_url} failed ({response.status_code}): {detail or 'see the server log'}."
    return str(detail) if detail else f"The API answered {response.status_code} for {response.request.url.path}."


def _send(base_url: str, token: str | None, method: str, path: str, params: tuple[tuple[str, Any], ...] = (),
          body: dict[str, Any] | None = None, answers: tuple[int, ...] = (), upload: bytes | None = None,
          timeout_s: float | None = None) -> httpx.Response:
    """One request (a JSON ``body``, or ``upload``: raw bytes sent as application/zip); an error status
    raises ApiError unless it is one of ``answers`` (an answer, not a failure)."""
    extra: dict[str, Any] = {"timeout": timeout_s} if timeout_s else {}
    if upload is not None:
        extra.update(content=upload, headers={"Content-Type": "application/zip"})
    try:
        response = _client(base_url, token).request(method, path, params=dict(params), json=body, **extra)
    except httpx.HTTPError as exc:
        raise ApiError(
            f"Cannot reach the Flight Recorder API at {base_url} ({type(exc).__name__}). "
            "Start it with: flightrec serve. Or point FLIGHTREC_API_URL (flightrec ui --api) at it."
        ) from exc
    if response.is_error and response.status_code not in answers:
        raise ApiError(_explain(response, base_url), response.status_code, _detail(response))
    return response


def _get(base_url: str, token: str | None, path: str, params: tuple[tuple[str, Any], ...]) -> httpx.Response:
    return _send(base_url, token, "GET", path, params)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _get_json(base_url: str, token: str | None, path: str, params: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return _get(base_url, token, path, params).json()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _get_bytes(base_url: str, token: str | None, path: str) -> bytes:
    return _get(base_url, token, path, ()).content


def get_json(path: str, **params: Any) -> dict[str, Any]:
    """GET an API path (cached for ``TTL_S``); raise ApiError with a readable message."""
    given = tuple(sorted((key, value) for key, value in params.items() if value not in (None, "")))
    return _get_json(api_url(), _api_token(), path, given)


def split_ref(ref: str) -> tuple[str, str]:
    """``ticket:TCK-1042`` -> (``ticket``, ``TCK-1042``); ValueError naming the expected form."""
    kind, sep, ident = ref.partition(":")
    if not sep or not kind.strip() or not ident.strip():
        raise ValueError(f"{ref!r} is not an object reference of the form type:id (e.g. ticket:TCK-1042)")
    return kind.strip().lower(), ident.strip()


def _object_path(ref: str) -> str:
    kind, ident = split_ref(ref)
    return f"/api/objects/{path_segment(kind)}/{path_segment(ident)}"


def objects(type: str | None = None, q: str | None = None, agent: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Recently touched objects, filtered by the API (type, id text, the agent that touched them)."""
    return get_json("/api/objects", type=type, q=q, agent=agent, limit=limit)


def story(ref: str) -> dict[str, Any]:
    return get_json(f"{_object_path(ref)}/story")


def story_html(ref: str) -> bytes:
    return _get_bytes(api_url(), _api_token(), f"{_object_path(ref)}/story.html")


def search(q: str) -> dict[str, Any]:
    return get_json("/api/search", q=q)


def trace(trace_id: str) -> dict[str, Any]:
    return get_json(f"/api/traces/{path_segment(trace_id.strip())}")


def get_fresh(path: str, **params: Any) -> dict[str, Any]:
    """GET an API path bypassing the cache: for state that changes while people watch (plans, switches)."""
    given = tuple(sorted((key, value) for key, value in params.items() if value not in (None, "")))
    return _send(api_url(), _api_token(), "GET", path, given).json()


def post_json(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body (never cached); raise ApiError with the API's own explanation."""
    return _send(api_url(), _api_token(), "POST", path, body=body).json()


# --- rollback console: actions, undo plans, kill switches ---------------------------------------

def actions(agent: str = "", object: str = "", last: int = 20, performed: bool = False) -> dict[str, Any]:
    """An agent's or an object's last actions, newest first (``{"items": [ActionRecord...]}``);
    ``performed``: only those that took effect."""
    return get_fresh("/api/actions", agent=agent, object=object, last=last, performed=performed or None)


def action_agents(scan: int = 2000) -> list[str]:
    """Agents that acted recently (from the actions registry), plus any with a kill switch set."""
    recent = get_json("/api/actions", last=scan)["items"]
    switched = get_json("/api/controls")["items"]
    names = [item["agent"] for item in recent] + [item["agent"] for item in switched if item.get("agent")]
    return sorted(set(filter(None, names)))


def _plan_path(plan_id: str, *rest: str) -> str:
    return "/".join(["/api/rollback/plans", path_segment(plan_id.strip()), *(path_segment(part) for part in rest)])


def create_plan(*, actor: str, last: int, agent: str = "", object: str = "", flow: str = "",
                since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Plan the undo of the last ``last`` actions of an agent, an object or a flow, within ``since``..``until``
    when given (a dry run: nothing executes)."""
    body: dict[str, Any] = {"agent": agent, "object": object, "flow": flow, "last": last, "actor": actor,
                            "since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    return post_json("/api/rollback/plans", {key: value for key, value in body.items() if value not in ("", None)})


def plans(limit: int = 20) -> dict[str, Any]:
    return get_fresh("/api/rollback/plans", limit=limit)


def plan(plan_id: str) -> dict[str, Any]:
    return get_fresh(_plan_path(plan_id))


def approve_plan(plan_id: str, actor: str) -> dict[str, Any]:
    """Approve as ``actor``; the API refuses (403) the plan's own author."""
    return post_json(_plan_path(plan_id, "approve"), {"actor": actor})


def execute_plan(plan_id: str, actor: str) -> dict[str, Any]:
    """Start or resume a plan without waiting for it; poll ``plan`` for progress."""
    return post_json(_plan_path(plan_id, "execute"), {"actor": actor, "wait": False})


def control(agent: str) -> dict[str, Any]:
    """An agent's kill switch: ``{agent, state, max_per_minute, actor, reason, updated_at}``."""
    return get_fresh(f"/api/controls/agents/{path_segment(agent.strip())}")


def set_control(agent: str, command: str, *, actor: str, reason: str = "", max_per_minute: int = 0) -> dict[str, Any]:
    """``command`` is pause, resume, drain or throttle."""
    return post_json(f"/api/controls/agents/{path_segment(agent.strip())}/{path_segment(command)}",
                     {"actor": actor, "reason": reason, "max_per_minute": max_per_minute})


def clear_cache() -> None:
    """Forget cached answers so the next read sees what was recorded since."""
    _get_json.clear()
    _get_bytes.clear()


# --- detectors: alerts, golden signals and governance --------------------------------------------

ALERT_STATUSES = ("pending", "firing", "resolved")


def alerts(status: str = "", limit: int = 200) -> list[dict[str, Any]]:
    """Alerts, newest first; ``status`` one of ``ALERT_STATUSES`` or empty for all."""
    return get_json("/api/alerts", status=status, limit=limit)["alerts"]


def active_alerts() -> list[dict[str, Any]]:
    """Alerts firing or pending (asked one status at a time, so resolved ones never crowd them out)."""
    return [alert for status in ("firing", "pending") for alert in alerts(status, limit=1000)]


def rollups(hours: float = 24, bucket_s: int = 900) -> list[dict[str, Any]]:
    """Golden signals per agent x flow x model x prompt version x time bucket over the last ``hours``."""
    return get_json("/api/rollups", hours=hours, bucket_s=bucket_s)["items"]


def governance(hours: float = 24 * 7) -> list[dict[str, Any]]:
    """Per agent and flow: corrections by people, guardrail blocks, mode mix and the next step."""
    return get_json("/api/governance", hours=hours)["items"]


def run_detectors() -> dict[str, Any]:
    """One detector pass now: ``{runs, findings, fired, resolved, deliveries, seconds}``; forgets cached reads."""
    result = post_json("/api/detectors/run", {})
    clear_cache()
    return result



# --- ingest health: the WAL backlog and quarantined segments ------------------------------------

HEALTH_STATUSES = ("ok", "degraded", "failing")


def health() -> dict[str, Any]:
    """``GET /api/health`` (never cached): ``{status, problems, backlog_spans, quarantine, ...}``.

    The server answers 503 when it is not healthy: that is a health answer with the same body,
    not an unreachable server, so it is returned like a 200.
    """
    response = _send(api_url(), _api_token(), "GET", "/api/health", answers=(503,))
    try:
        answer = response.json()
    except ValueError as exc:
        raise ApiError(f"The API at {api_url()} answered {response.status_code} for /api/health without "
                       "a health report.", response.status_code) from exc
    if not isinstance(answer, dict) or "status" not in answer:
        raise ApiError(f"The API at {api_url()} answered {response.status_code} for /api/health without "
                       "a health report.", response.status_code)
    return {**answer, "http_status": response.status_code}


def stats() -> dict[str, Any]:
    """``GET /api/stats`` (never cached): the store's counts and ``redaction`` ``{enabled, rules, traces, logs,
    total}``, what intake redacted per signal and rule since the server started."""
    return get_fresh("/api/stats")


def quarantine() -> dict[str, Any]:
    """Quarantined WAL segments (never cached): ``{"items": [{segment, spans, bytes, reason, attempts,
    quarantined_at}], "count": int}``."""
    return get_fresh("/api/quarantine")


def replay_segment(segment_name: str, actor: str) -> dict[str, Any]:
    """Put a quarantined segment back in line for the writer, as ``actor``; forgets cached reads."""
    response = _send(api_url(), _api_token(), "POST", f"/api/quarantine/{path_segment(segment_name)}/replay",
                     body={"actor": actor})
    clear_cache()
    return response.json() if response.content else {}


# --- the audit log: entries, its signed head and its check ---------------------------------------

def audit_entries(actor: str = "", act: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """Audit entries newest first (``AuditEntry``: seq, time, actor, act, subject, details, hashes)."""
    return get_json("/api/audit", actor=actor, act=act, order="desc", limit=limit)["items"]


def audit_verify() -> dict[str, Any]:
    """The API's check of the whole log (never cached): ``{ok, entries, signed_through, problems, notes, ...}``."""
    return get_fresh("/api/audit/verify")


def audit_head() -> dict[str, Any]:
    """``{head: {seq, hash, time, key_id, signature} | None, key: {pem, raw_base64, fingerprint}}`` (never cached)."""
    return get_fresh("/api/audit/head")


# --- evidence bundles ------------------------------------------------------------------------------

EXPORT_TIMEOUT_S = 300  # a large scope takes a while to sequence, prove and zip


def export_preview(scope: dict[str, Any]) -> dict[str, Any]:
    """What a bundle of this scope would hold (counts, the first objects, the queries), nothing exported."""
    return post_json("/api/evidence/exports/preview", scope)


def export_bundle(scope: dict[str, Any]) -> tuple[str, str, bytes]:
    """Export (audited) a bundle of this scope: (bundle id, file name, the zip's bytes)."""
    response = _send(api_url(), _api_token(), "POST", "/api/evidence/exports", body=scope, timeout_s=EXPORT_TIMEOUT_S)
    bundle_id = response.headers.get("X-Flightrec-Bundle-Id", "")
    disposition = response.headers.get("Content-Disposition", "")
    name = disposition.partition('filename="')[2].rstrip('"') or f"flightrec-evidence-{bundle_id or 'bundle'}.zip"
    return bundle_id, name, response.content


def verify_bundle(data: bytes) -> dict[str, Any]:
    """The verdict on a bundle's bytes: the offline verifier, run by the API (nothing read from the store)."""
    return _send(api_url(), _api_token(), "POST", "/api/evidence/bundles/verify", upload=data,
                 timeout_s=EXPORT_TIMEOUT_S).json()
