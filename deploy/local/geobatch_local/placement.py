"""What the ECS agent stand-in does next: the pure part, kept apart so it is unit-tested.

ECS, for a service on EC2 instances, keeps the number of running tasks at the service's
desired count within the capacity of the ACTIVE container instances; on scale-in it stops
only tasks without scale-in protection; a DRAINING instance gets no new tasks and its
unprotected tasks are stopped (and replaced elsewhere if the count still calls for them).
`plan` makes those choices for one reconcile step, deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InstanceView:
    """A container instance as the agent sees it."""

    instance_id: str
    draining: bool = False


@dataclass(frozen=True)
class TaskView:
    """A task process as the agent sees it; a stopping task still holds its slot until it exits."""

    task_id: str
    instance_id: str
    protected: bool = False
    stopping: bool = False


@dataclass
class Plan:
    """Tasks to stop (SIGTERM) and the instances to start new tasks on, in order."""

    stop: list[str] = field(default_factory=list)
    start_on: list[str] = field(default_factory=list)


def plan(
    desired_tasks: int,
    instances: list[InstanceView],
    tasks: list[TaskView],
    tasks_per_instance: int,
) -> Plan:
    """Decides one step: which tasks to stop and where to start new ones."""
    result = Plan()
    known = {i.instance_id for i in instances}
    draining = {i.instance_id for i in instances if i.draining}
    live = [t for t in tasks if not t.stopping and t.instance_id in known]
    live_per_instance: dict[str, int] = {i.instance_id: 0 for i in instances}
    for task in live:
        live_per_instance[task.instance_id] += 1

    # Draining instances lose their unprotected tasks first.
    for task in sorted(live, key=lambda t: t.task_id):
        if task.instance_id in draining and not task.protected:
            result.stop.append(task.task_id)

    # Scale-in: only unprotected tasks, from the emptiest instances first so whole instances
    # become idle and can be removed.
    remaining = [t for t in live if t.task_id not in result.stop]
    excess = len(remaining) - max(desired_tasks, 0)
    if excess > 0:
        candidates = sorted(
            (t for t in remaining if not t.protected),
            key=lambda t: (live_per_instance[t.instance_id], t.instance_id, t.task_id),
        )
        result.stop.extend(t.task_id for t in candidates[:excess])

    # Scale-out: bin-pack onto the fullest ACTIVE instance that has a free slot. A slot is
    # free only once the task holding it has exited.
    running_after = len(live) - len(result.stop)
    deficit = desired_tasks - running_after
    occupied: dict[str, int] = {i.instance_id: 0 for i in instances}
    for task in tasks:
        if task.instance_id in occupied:
            occupied[task.instance_id] += 1
    while deficit > 0:
        open_instances = [
            i.instance_id
            for i in instances
            if not i.draining and occupied[i.instance_id] < tasks_per_instance
        ]
        if not open_instances:
            break
        target = min(open_instances, key=lambda i: (-occupied[i], i))
        result.start_on.append(target)
        occupied[target] += 1
        deficit -= 1
    return result
