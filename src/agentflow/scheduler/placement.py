"""The placement policy, re-exported: it lives in :mod:`agentflow.state.placement` because the
state machine also runs it while applying (placement inline with the entry that makes room)."""

from agentflow.state.placement import (
    Plan,
    Room,
    fits,
    plan_assignments,
    plan_pass,
    unschedulable_reason,
)

__all__ = ["Plan", "Room", "fits", "plan_assignments", "plan_pass", "unschedulable_reason"]
