"""Acting on agents: the actions registry, undo plans executed as a durable saga, the registry of
systems of record undo may call, kill switches.

Exports load on first use (PEP 562), so the settings can import the light models of
:mod:`flightrec.rollback.systems` without pulling in the executor, the store or protobuf.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "controls": ["KillSwitches"],
        "executors": ["UndoExecutor", "UndoFailed"],
        "models": ["ControlDecision", "ControlState", "PlanStep", "Selector", "UndoCall", "UndoPlan"],
        "registry": ["SystemRegistry"],
        "service": ["PlanError", "RollbackService"],
        "systems": ["RiskRule", "SystemOfRecord", "SystemSpec", "UndoPolicy"],
    },
)
