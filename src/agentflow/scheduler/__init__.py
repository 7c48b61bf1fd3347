"""Leader-only control: pure policies (priority order, placement) and the loop that applies them.

The policies read the state machine and return decisions; the loop stamps time and proposes
them as commands. Nothing here changes state except through the command log. Entry point:
:class:`Scheduler`.
"""

from agentflow.scheduler.loop import Scheduler, SchedulerConfig
from agentflow.scheduler.placement import plan_assignments

__all__ = ["Scheduler", "SchedulerConfig", "plan_assignments"]
