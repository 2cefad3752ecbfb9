"""Dependencies: handlers reach the runtime's parts and the caller's identity through these."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from flightrec.collector import BatchWriter, IngestPipeline
from flightrec.detectors.runner import DetectorRunner
from flightrec.evidence.audit_heads import HeadKeeper
from flightrec.evidence.sequencer import Sequencer
from flightrec.runtime import Runtime
from flightrec.rollback import KillSwitches, RollbackService, SystemRegistry
from flightrec.store import Store


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the server is starting or stopping")
    return runtime


def _running_part(request: Request, name: str, what: str):  # noqa: ANN202 - the part's own type
    part = getattr(get_runtime(request), name)
    if part is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{what} is not running")
    return part


def get_store(request: Request) -> Store:
    return _running_part(request, "store", "the store")


def get_pipeline(request: Request) -> IngestPipeline:
    return _running_part(request, "pipeline", "intake")


def get_writer(request: Request) -> BatchWriter:
    return _running_part(request, "writer", "the writer")


def get_rollback(request: Request) -> RollbackService:
    return _running_part(request, "rollback", "rollback")


def get_systems(request: Request) -> SystemRegistry:
    """The registry of systems of record undo may call: the one the runtime wired into rollback at start."""
    return _running_part(request, "systems", "the registry of systems of record")


def get_switches(request: Request) -> KillSwitches:
    return _running_part(request, "switches", "the kill switches")


def get_detectors(request: Request) -> DetectorRunner:
    return _running_part(request, "detectors", "the detectors")


def get_audit_heads(request: Request) -> HeadKeeper:
    """The signer of the audit log's heads (its key, the head file)."""
    return _running_part(request, "audit_heads", "the audit head signer")


def get_sequencer(request: Request) -> Sequencer:
    """The evidence log's sequencer and checkpoint signer."""
    return _running_part(request, "evidence", "the evidence log's sequencer")
