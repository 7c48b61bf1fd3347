"""Placement policy: which queued task goes to which worker. Pure: reads state, returns pairs.

Among live, non-draining workers of the task's group with room (slots plus prefetch), the least
loaded wins: load is the fraction of that capacity in use, ties go to fewer attempts held, then
to the smaller id.
Tasks are taken best first from each group's ready queue.
"""

from __future__ import annotations

import heapq

from agentflow.state import StateMachine, WorkerRecord

__all__ = ["plan_assignments"]


def plan_assignments(sm: StateMachine, *, max_assignments: int = 4096) -> list[tuple[str, str]]:
    """The assignments one scheduling pass should propose, best task first."""
    by_group: dict[str, list[WorkerRecord]] = {}
    for worker in sm.workers.values():
        if worker.live and not worker.draining and worker.free_capacity > 0:
            by_group.setdefault(worker.group, []).append(worker)
    plan: list[tuple[str, str]] = []
    for group, workers in by_group.items():
        if sm.ready.depth(group) == 0:
            continue
        # (load, running, id, free slots) — a heap of candidates, least loaded on top.
        heap = [
            (len(w.running) / w.capacity, len(w.running), w.id, w.free_capacity) for w in workers
        ]
        heapq.heapify(heap)
        for task_id in sm.ready.ordered(group):
            if not heap or len(plan) >= max_assignments:
                break
            _load, running, worker_id, free = heapq.heappop(heap)
            plan.append((task_id, worker_id))
            if free > 1:
                capacity = sm.workers[worker_id].capacity
                heapq.heappush(heap, ((running + 1) / capacity, running + 1, worker_id, free - 1))
    return plan
