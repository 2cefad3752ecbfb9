"""Acting on agents: the actions registry, undo plans executed as a durable saga, kill switches."""

from rollback.controls import KillSwitches
from rollback.executors import UndoExecutor, UndoFailed
from rollback.models import ControlDecision, ControlState, PlanStep, Selector, UndoCall, UndoPlan
from rollback.service import PlanError, RollbackService

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
