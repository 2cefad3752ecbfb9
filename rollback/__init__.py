"""Acting on agents: the actions registry, undo plans executed as a durable saga, kill switches."""

from flightrec.rollback.controls import KillSwitches
from flightrec.rollback.executors import UndoExecutor, UndoFailed
from flightrec.rollback.models import ControlDecision, ControlState, PlanStep, Selector, UndoCall, UndoPlan
from flightrec.rollback.service import PlanError, RollbackService

__all__ = [
    "ControlDecision",
    "ControlState",
    "KillSwitches",
    "PlanError",
    "PlanStep",
    "RollbackService",
    "Selector",
    "UndoCall",
    "UndoExecutor",
    "UndoFailed",
    "UndoPlan",
]
