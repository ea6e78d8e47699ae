"""The whole geobatch pipeline on this machine: emulator, stack, controller, agent stand-in.

`LocalPipeline` is a context manager shared by the demo and the fault test. Entering it
starts the emulator, deploys the production template into it (applying what the emulator
ignores), starts ``geobatch-controller run`` live against it with the configuration the
stack's controller instance would write, and starts the ECS agent stand-in, which runs the
service's tasks as worker containers when the worker image holds the freshly built binary
(``make images``), else as ``geobatch-worker`` processes (``runners.py``). Leaving it stops all of them:
workers first (SIGTERM, then SIGKILL after the stop timeout), then the controller, then the
emulator. Every child also dies with this process if it is killed outright.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import runners
from . import stack as stack_module
from .agent import EcsAgentStandIn
from .imds import ImdsStandIn
from .emulator import Emulator, base_env, free_port
from .processes import Supervisor
from .timeline import Sample, Sampler

VENV_MOTO = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "moto_server"


@dataclass
class Settings:
    """What differs between the demo and the fault test."""

    target_dir: Path
    out_dir: Path
    stack_name: str = "geobatch-local"
    parameters: dict[str, str] = field(default_factory=dict)
    moto_server: Path = VENV_MOTO
    # How worker tasks run: "container", "process", or "auto" (containers when the image holds
    # the binary in target_dir); GEOBATCH_LOCAL_RUNNER sets it for the demo and the fault test.
    runner: str = field(default_factory=lambda: os.environ.get("GEOBATCH_LOCAL_RUNNER", "auto"))


class LocalPipeline:
    """A running local pipeline; use as a context manager."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.supervisor = Supervisor()
        self.emulator: Emulator
        self.stack: stack_module.Stack
        self.agent: EcsAgentStandIn | None = None
        self.imds: ImdsStandIn | None = None
        self.sampler: Sampler | None = None
        self.started_at = time.monotonic()
        self._logs: list = []
        # Where the batch commands find the controller and its pools (set on start).
        self.controller_url = ""
        self.controller_config = Path()

    # ------------------------------------------------------------------ start and stop
    def __enter__(self) -> "LocalPipeline":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _log(self, name: str):
        handle = open(self.settings.out_dir / name, "ab")
        self._logs.append(handle)
        return handle

    def _start(self) -> None:
        out = self.settings.out_dir
        (out / "tasks").mkdir(parents=True, exist_ok=True)
        worker = self.settings.target_dir / "geobatch-worker"
        controller = self.settings.target_dir / "geobatch-controller"
        for binary in (worker, controller):
            if not binary.is_file():
                raise SystemExit(f"{binary} is missing: build it first (`cargo build -p {binary.name}`)")

        runner = runners.choose(self.settings.runner, worker, base_env())
        self.say(f"0. {runner.description}")

        self.say("1. starting the local AWS emulator (moto, loopback only)")
        self.emulator = Emulator.start(self.supervisor, self.settings.moto_server, self._log("moto.log"))
        self.say(f"   emulator at {self.emulator.endpoint_url}")

        self.say("2. deploying deploy/cloudformation/geobatch.yaml into it")
        worker_image = runners.WORKER_IMAGE if isinstance(runner, runners.PodmanRunner) else str(worker)
        parameters = {"NamePrefix": self.settings.stack_name, "WorkerImage": worker_image, "ControllerImage": str(controller), **self.settings.parameters}
        self.stack = stack_module.deploy(self.emulator, self.settings.stack_name, parameters, report=lambda m: self.say("   " + m))

        self.say("3. starting the controller (live) and the ECS agent stand-in")
        config_path = out / "controller.toml"
        config = stack_module.controller_config(self.emulator, self.stack, parameters)
        # moto's CloudWatch has no SQS metrics, so the NumberOfEmptyReceives corroboration
        # cannot be had locally; the controller's documented switch for that case.
        config += "require_empty_receives = false\n"
        config_path.write_text(config)
        env = {**base_env(), **self.emulator.child_env(), "RUST_LOG": "info"}
        listen = f"127.0.0.1:{free_port()}"
        self.controller_url = f"http://{listen}"
        self.controller_config = config_path
        self.supervisor.start(
            "controller",
            [str(controller), "run", "--config", str(config_path), "--listen", listen],
            env=env,
            log=self._log("controller.log"),
            stdout=self._log("controller-decisions.jsonl"),
        )
        self.say(
            f"   controller: {config_path}, metrics at http://{listen}/metrics, decisions in "
            f"{out / 'controller-decisions.jsonl'}, log {out / 'controller.log'}"
        )
        self.imds = ImdsStandIn()
        self.imds.start()
        self.agent = EcsAgentStandIn(self.emulator, self.stack, runner, out / "tasks", imds=self.imds)
        self.agent.start()
        self.say(
            f"   agent stand-in: task protection at {self.agent.protection_endpoint}, instance metadata "
            f"(Spot notices) at {self.imds.endpoint('<instance id>')}, task logs in {out / 'tasks'}"
        )
        self.started_at = time.monotonic()
        self.sampler = Sampler(self.look)
        self.sampler.start()

    def close(self) -> None:
        if self.sampler:
            self.sampler.stop()
        if self.agent:
            self.agent.shutdown()
        if self.imds:
            self.imds.shutdown()
        self.supervisor.stop_all()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    # ------------------------------------------------------------------ observing
    def queue_counts(self, queue_url: str | None = None) -> tuple[int, int, int]:
        attrs = self.emulator.client("sqs").get_queue_attributes(
            QueueUrl=queue_url or self.stack.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
            int(attrs["ApproximateNumberOfMessagesDelayed"]),
        )

    def sizes(self) -> tuple[int, int, int]:
        """(service desired count, group desired capacity, instances in service)."""
        service = self.emulator.client("ecs").describe_services(cluster=self.stack.cluster, services=[self.stack.service])["services"][0]
        group = self.emulator.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[self.stack.worker_group])[
            "AutoScalingGroups"
        ][0]
        in_service = sum(1 for i in group["Instances"] if i["LifecycleState"] == "InService")
        return int(service["desiredCount"]), int(group["DesiredCapacity"]), in_service

    def look(self) -> Sample:
        visible, in_flight, _delayed = self.queue_counts()
        desired_tasks, desired_instances, instances = self.sizes()
        assert self.agent is not None
        return Sample(
            secs=round(time.monotonic() - self.started_at, 1),
            visible=visible,
            in_flight=in_flight,
            desired_tasks=desired_tasks,
            running_tasks=self.agent.running_count(),
            protected_tasks=self.agent.protected_count(),
            desired_instances=desired_instances,
            instances=instances,
        )

    def output_objects(self) -> dict[str, bytes]:
        """Every object under the output prefix, by key relative to the prefix."""
        s3 = self.emulator.client("s3")
        found: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.output_bucket, Prefix=self.stack.output_prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=self.stack.output_bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(self.stack.output_prefix) :]] = body
        return found

    def batch_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs `geobatch-controller ARGS` (backfill, status, redrive, report) against the
        emulator, as an operator would with the stack's AWS settings; output is captured."""
        env = {**base_env(), **self.emulator.child_env(), "GEOBATCH_CONTROLLER_URL": self.controller_url}
        binary = self.settings.target_dir / "geobatch-controller"
        return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    def outcome_key(self, input_key: str) -> str:
        """Key, relative to the output prefix, of the outcome of an input object: the worker
        writes one per source, at <bucket>/<key>.json (docs/worker.md, "Outputs")."""
        return f"{self.stack.input_bucket}/{input_key}.json"

    def output_keys(self) -> set[str]:
        s3 = self.emulator.client("s3")
        keys: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.output_bucket, Prefix=self.stack.output_prefix):
            keys.update(item["Key"][len(self.stack.output_prefix) :] for item in page.get("Contents", []))
        return keys

    # ------------------------------------------------------------------ acting
    def upload(self, files: list[tuple[str, bytes]], under_input_prefix: bool = True) -> None:
        """Uploads (key, bytes) pairs as a user would, under the input prefix unless told not to."""
        s3 = self.emulator.client("s3")
        prefix = self.stack.input_prefix if under_input_prefix else ""
        for key, body in files:
            s3.put_object(Bucket=self.stack.input_bucket, Key=prefix + key, Body=body)

    def wait_scaled_to_zero(self, timeout_secs: float) -> bool:
        """Waits for an empty queue, no task, desired count 0 and no instance."""
        deadline = time.monotonic() + timeout_secs
        assert self.agent is not None
        while time.monotonic() < deadline:
            if self.queue_counts() == (0, 0, 0) and self.sizes() == (0, 0, 0) and self.agent.running_count() == 0:
                return True
            time.sleep(1)
        return False
