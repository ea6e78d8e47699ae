"""A local stand-in for the ECS agent on the worker instances.

It does for the local stack what ECS and its agents do in AWS, and nothing more:
- every instance InService in the worker Auto Scaling Group becomes a container instance of
  the cluster (registered in the emulator, so the controller sees it);
- it runs the service's task definition as worker containers or ``geobatch-worker``
  processes (``runners.py``), as many as the service's desired count within the instances'
  capacity (``TasksPerInstance`` each), with the definition's command and environment, and
  records each task in the emulator
  (``StartTask``/``StopTask``), so running-task counts per instance are real there;
- each task gets its own ``ECS_AGENT_URI`` and the task-protection endpoint behind it, and,
  given an instance metadata stand-in (``imds.py``), its instance's metadata endpoint, so a
  Spot interruption can be announced to the tasks of one instance;
- scale-in and draining stop only unprotected tasks: SIGTERM, then SIGKILL after the
  container's stop timeout; a task whose process exits is replaced while the count calls
  for it; an instance that leaves the group takes its tasks with it (SIGKILL), and the
  event records whether a task there still held protection.

Moto does not implement ECS task protection nor run tasks, which is why this exists.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from .emulator import Emulator, free_port
from .imds import ImdsStandIn
from .placement import InstanceView, TaskView, plan
from .runners import TaskRunner
from .stack import Stack

PROTECTION_PATH = "/task-protection/v1/state"
DEFAULT_PROTECTION_MINUTES = 120
MAX_PROTECTION_MINUTES = 2880


@dataclass
class Task:
    """One worker container or process standing in for one ECS task."""

    task_arn: str
    instance_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    protected_until: float = 0.0
    stopping_since: float | None = None
    stop_reason: str = ""

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    def protected(self, now: float) -> bool:
        return now < self.protected_until


class EcsAgentStandIn:
    """Reconciles worker processes with the service and the Auto Scaling Group."""

    def __init__(
        self,
        emulator: Emulator,
        stack: Stack,
        runner: TaskRunner,
        log_dir: Path,
        poll_secs: float = 0.5,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        imds: ImdsStandIn | None = None,
    ) -> None:
        self._imds = imds
        self._emulator = emulator
        self._stack = stack
        self._runner = runner
        self._log_dir = log_dir
        self._poll_secs = poll_secs
        self._on_event = on_event
        self._ecs = emulator.client("ecs")
        self._autoscaling = emulator.client("autoscaling")
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._container_instances: dict[str, str] = {}  # EC2 instance id -> container instance ARN
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._shutting_down = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler_class())
        self._server.daemon_threads = True
        self._server_thread = threading.Thread(target=self._server.serve_forever, name="task-protection", daemon=True)
        self.errors = 0
        definition = self._ecs.describe_task_definition(
            taskDefinition=self._ecs.describe_services(cluster=stack.cluster, services=[stack.service])[
                "services"
            ][0]["taskDefinition"]
        )["taskDefinition"]
        self._task_definition_arn = definition["taskDefinitionArn"]
        container = definition["containerDefinitions"][0]
        self._container = container
        self._environment = {e["name"]: e["value"] for e in container.get("environment", [])}
        self._stop_timeout_secs = float(container.get("stopTimeout", stack.stop_timeout_secs))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._server_thread.start()
        self._thread = threading.Thread(target=self._loop, name="ecs-agent", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stops every task (SIGTERM, SIGKILL after the stop timeout), then the loop.

        The loop thread spawned the tasks, and the kernel kills a child when the thread that
        spawned it exits (``PR_SET_PDEATHSIG``), so the thread must outlive the tasks.
        """
        self._shutting_down.set()
        with self._lock:  # waits for a reconcile in progress
            tasks = list(self._tasks.values())
        for task in tasks:
            if task.process.poll() is None:
                self._runner.stop(task.task_id, task.process, self._stop_timeout_secs)
        deadline = time.monotonic() + self._stop_timeout_secs
        for task in tasks:
            try:
                task.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._runner.kill(task.task_id, task.process)
                task.process.wait()
        self._runner.cleanup()
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        self._server.shutdown()
        self._server.server_close()

    @property
    def protection_endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ views
    def live_tasks(self) -> list[Task]:
        with self._lock:
            return [t for t in self._tasks.values() if t.process.poll() is None and t.stopping_since is None]

    def running_count(self) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.process.poll() is None)

    def protected_count(self) -> int:
        now = time.time()
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.process.poll() is None and t.protected(now))

    # ------------------------------------------------------------------ fault injection
    def kill(self, task_arn: str) -> None:
        """SIGKILL a task, as an out-of-memory kill or a crashed host would."""
        with self._lock:
            task = self._tasks.get(task_arn)
            if task is None or task.process.poll() is not None:
                return
            task.stop_reason = "killed (SIGKILL) by fault injection"
            self._emit("task-killed", task, reason=task.stop_reason)
            self._runner.kill(task.task_id, task.process)

    def interrupt_instance(self, instance_id: str, notice_secs: float = 120.0) -> float:
        """Announces a Spot interruption of an instance through its metadata stand-in, as EC2
        does two minutes ahead; returns when the notice became visible (epoch seconds)."""
        if self._imds is None:
            raise RuntimeError("the agent was started without an instance metadata stand-in")
        at = self._imds.interrupt(instance_id, notice_secs)
        self._emit("spot-interruption-notice", None, instance=instance_id, notice_secs=notice_secs)
        return at

    def stop_externally(self, task_arn: str, reason: str) -> None:
        """SIGTERM a task regardless of protection, as `aws ecs stop-task` does."""
        with self._lock:
            task = self._tasks.get(task_arn)
            if task is None or task.stopping_since is not None:
                return
            self._begin_stop(task, reason)

    # ------------------------------------------------------------------ reconcile
    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._shutting_down.is_set():
                self._stop.wait(self._poll_secs)
                continue
            try:
                self.reconcile()
            except Exception as err:  # noqa: BLE001 - the agent keeps going, like ECS's
                self.errors += 1
                self._emit("agent-error", None, reason=repr(err))
            self._stop.wait(self._poll_secs)

    def reconcile(self) -> None:
        """One step: instances, exited tasks, stop timeouts, then the desired count."""
        now = time.time()
        group = self._autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self._stack.worker_group])[
            "AutoScalingGroups"
        ][0]
        in_service = sorted(i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService")
        with self._lock:
            self._sync_instances(in_service, now)
            self._reap(now)
            self._escalate(now)
            service = self._ecs.describe_services(cluster=self._stack.cluster, services=[self._stack.service])[
                "services"
            ][0]
            desired = int(service["desiredCount"])
            statuses = self._container_instance_statuses()
            views = [InstanceView(i, draining=statuses.get(i) == "DRAINING") for i in in_service]
            task_views = [
                TaskView(t.task_arn, t.instance_id, protected=t.protected(now), stopping=t.stopping_since is not None)
                for t in self._tasks.values()
            ]
            decision = plan(desired, views, task_views, self._stack.tasks_per_instance)
            for task_arn in decision.stop:
                task = self._tasks[task_arn]
                draining = statuses.get(task.instance_id) == "DRAINING"
                self._begin_stop(task, "instance draining" if draining else f"service scale-in to {desired}")
            for instance_id in decision.start_on:
                self._start_task(instance_id)

    def _container_instance_statuses(self) -> dict[str, str]:
        arns = list(self._container_instances.values())
        if not arns:
            return {}
        described = self._ecs.describe_container_instances(cluster=self._stack.cluster, containerInstances=arns)
        return {ci["ec2InstanceId"]: ci["status"] for ci in described["containerInstances"]}

    def _sync_instances(self, in_service: list[str], now: float) -> None:
        for instance_id in in_service:
            if instance_id not in self._container_instances:
                registered = self._ecs.register_container_instance(
                    cluster=self._stack.cluster,
                    instanceIdentityDocument=json.dumps({"instanceId": instance_id, "region": "us-east-1"}),
                )["containerInstance"]
                self._container_instances[instance_id] = registered["containerInstanceArn"]
                self._emit("instance-joined", None, instance=instance_id)
        for instance_id in [i for i in self._container_instances if i not in in_service]:
            for task in [t for t in self._tasks.values() if t.instance_id == instance_id and t.process.poll() is None]:
                task.stop_reason = "instance terminated"
                self._emit("task-lost-with-instance", task, protected=task.protected(now), reason=task.stop_reason)
                self._runner.kill(task.task_id, task.process)
                task.process.wait()
            arn = self._container_instances.pop(instance_id)
            self._ecs.deregister_container_instance(cluster=self._stack.cluster, containerInstance=arn, force=True)
            self._emit("instance-left", None, instance=instance_id)
        self._reap(now)

    def _reap(self, now: float) -> None:
        for task in list(self._tasks.values()):
            code = task.process.poll()
            if code is None:
                continue
            del self._tasks[task.task_arn]
            if task.instance_id in self._container_instances:
                self._ecs.stop_task(cluster=self._stack.cluster, task=task.task_arn, reason=task.stop_reason or "exited")
            self._emit("task-stopped", task, exit_code=code, reason=task.stop_reason or "exited by itself")

    def _escalate(self, now: float) -> None:
        for task in self._tasks.values():
            if task.stopping_since is not None and task.process.poll() is None:
                if time.monotonic() - task.stopping_since > self._stop_timeout_secs:
                    self._emit("task-sigkill-after-stop-timeout", task)
                    self._runner.kill(task.task_id, task.process)

    def _begin_stop(self, task: Task, reason: str) -> None:
        now = time.time()
        task.stopping_since = time.monotonic()
        task.stop_reason = reason
        self._emit("task-stopping", task, protected=task.protected(now), reason=reason)
        self._runner.stop(task.task_id, task.process, self._stop_timeout_secs)

    def _start_task(self, instance_id: str) -> None:
        started = self._ecs.start_task(
            cluster=self._stack.cluster,
            taskDefinition=self._task_definition_arn,
            containerInstances=[self._container_instances[instance_id]],
            startedBy="ecs-svc/geobatch-local",
            group=f"service:{self._stack.service}",
        )["tasks"][0]
        task_arn = started["taskArn"]
        task_id = task_arn.rsplit("/", 1)[-1]
        env = {
            **self._emulator.child_env(),
            **self._environment,
            "ECS_AGENT_URI": f"{self.protection_endpoint}/api/{task_id}",
            "GEOBATCH_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        }
        if self._imds is not None:
            env["GEOBATCH_SPOT_WATCH"] = "on"
            env["GEOBATCH_IMDS_ENDPOINT"] = self._imds.endpoint(instance_id)
        log_path = self._log_dir / f"task-{task_id}.log"
        with open(log_path, "ab") as log:
            process = self._runner.start(task_id, self._container, env, log)
        task = Task(task_arn, instance_id, process, log_path, time.time())
        self._tasks[task_arn] = task
        self._emit("task-started", task)

    # ------------------------------------------------------------------ events
    def _emit(self, event: str, task: Task | None, **fields: Any) -> None:
        record: dict[str, Any] = {"time": time.time(), "event": event}
        if task is not None:
            record.update(task=task.task_id, instance=task.instance_id, pid=task.process.pid)
        record.update(fields)
        with self._lock:
            self.events.append(record)
        if self._on_event:
            self._on_event(record)

    # ------------------------------------------------------------------ task protection
    def _set_protection(self, task_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            task = next((t for t in self._tasks.values() if t.task_id == task_id), None)
            if task is None:
                return 404, {"error": {"Code": "ResourceNotFoundException", "Message": f"no task {task_id}"}}
            enabled = body.get("ProtectionEnabled")
            if not isinstance(enabled, bool):
                return 400, {"error": {"Code": "InvalidParameterException", "Message": "ProtectionEnabled must be a boolean"}}
            minutes = body.get("ExpiresInMinutes", DEFAULT_PROTECTION_MINUTES)
            if not isinstance(minutes, int) or not 1 <= minutes <= MAX_PROTECTION_MINUTES:
                return 400, {"error": {"Code": "InvalidParameterException", "Message": "ExpiresInMinutes must be 1..2880"}}
            was = task.protected(time.time())
            task.protected_until = time.time() + minutes * 60 if enabled else 0.0
            if was != enabled:
                self._emit("task-protection", task, enabled=enabled)
            return 200, self._protection_body(task)

    def _get_protection(self, task_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            task = next((t for t in self._tasks.values() if t.task_id == task_id), None)
            if task is None:
                return 404, {"error": {"Code": "ResourceNotFoundException", "Message": f"no task {task_id}"}}
            return 200, self._protection_body(task)

    @staticmethod
    def _protection_body(task: Task) -> dict[str, Any]:
        enabled = task.protected(time.time())
        protection: dict[str, Any] = {"ProtectionEnabled": enabled, "TaskArn": task.task_arn}
        if enabled:
            expiry = datetime.fromtimestamp(task.protected_until, tz=timezone.utc)
            protection["ExpirationDate"] = expiry.isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"protection": protection}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def _task_id(self) -> str | None:
                parts = self.path.split("/", 3)
                # /api/<task id>/task-protection/v1/state
                if len(parts) == 4 and parts[1] == "api" and "/" + parts[3] == PROTECTION_PATH:
                    return parts[2]
                return None

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                task_id = self._task_id()
                if task_id is None:
                    self._reply(404, {"error": {"Code": "NotFound", "Message": self.path}})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._reply(400, {"error": {"Code": "InvalidParameterException", "Message": "body is not JSON"}})
                    return
                self._reply(*agent._set_protection(task_id, body if isinstance(body, dict) else {}))

            def do_GET(self) -> None:  # noqa: N802
                task_id = self._task_id()
                if task_id is None:
                    self._reply(404, {"error": {"Code": "NotFound", "Message": self.path}})
                    return
                self._reply(*agent._get_protection(task_id))

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler
