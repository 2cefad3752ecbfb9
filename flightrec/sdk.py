"""The agent-side helper: one call to ask Flight Recorder before acting.

    controls = ControlClient("http://127.0.0.1:4318")
    if controls.check("support-agent", flow="issue_refund").allowed:
        issue_refund(...)

Answers are cached for ``cache_s`` seconds, so a pause reaches every agent
process within that time plus one request. Throttling is enforced here, per
process, from the switch's max actions per minute. When the API cannot be
reached, ``fail_open`` decides: act (True) or hold (False).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import httpx
from pydantic import BaseModel

from flightrec.paths import api_path, path_segment

__all__ = ["ControlClient", "Decision", "api_path", "path_segment"]


class Decision(BaseModel):
    allowed: bool
    state: str
    reason: str = ""
    max_per_minute: int = 0
    throttle_key: str = ""


class ControlClient:
    """Asks the API whether an agent may act; caches briefly; throttles locally."""

    def __init__(
        self,
        api_url: str = "http://127.0.0.1:4318",
        token: str | None = None,
        cache_s: float = 2.0,
        fail_open: bool = True,
        timeout_s: float = 2.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.cache_s = cache_s
        self.fail_open = fail_open
        self._cache: dict[tuple[str, str, bool], tuple[float, Decision]] = {}
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _fetch(self, agent: str, flow: str, starting: bool) -> Decision:
        key = (agent, flow, starting)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached and now - cached[0] < self.cache_s:
            return cached[1]
        try:
            response = self._http.get("/api/controls/check", params={"agent": agent, "flow": flow, "starting": starting})
            if response.status_code in (401, 403):  # refused, not unreachable: never fail open on that
                detail = response.text[:200]
                decision = Decision(allowed=False, state="refused",
                                    reason=f"the controls check refused this client (HTTP {response.status_code}: "
                                           f"{detail}); give it an agent token for {agent}")
                self._cache[key] = (now, decision)
                return decision
            response.raise_for_status()
            decision = Decision.model_validate(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            state = "running" if self.fail_open else "paused"
            decision = Decision(allowed=self.fail_open, state=state, reason=f"controls unreachable ({exc})")
        self._cache[key] = (now, decision)
        return decision

    def check(self, agent: str, flow: str = "", starting: bool = False) -> Decision:
        """May ``agent`` act now (or, with ``starting``, begin new work)? Counts the action if allowed."""
        with self._lock:
            decision = self._fetch(agent, flow, starting)
            if not decision.allowed or decision.max_per_minute <= 0 or starting:
                return decision
            # An agent's limit counts all its flows together; a flow's limit counts that flow.
            recent = self._recent.setdefault(decision.throttle_key or f"agent:{agent}", deque())
            now = time.monotonic()
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= decision.max_per_minute:
                return Decision(allowed=False, state="throttled", max_per_minute=decision.max_per_minute,
                                reason=f"throttled to {decision.max_per_minute} actions a minute")
            recent.append(now)
            return decision

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
