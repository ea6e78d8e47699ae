"""How the ECS agent stand-in runs a task: as a worker container, or as a worker process.

``PodmanRunner`` runs the worker image (``make images``) as ECS runs the task definition's
container: its command, its environment and nothing else from this machine, non-root,
read-only root filesystem with the definition's scratch volumes, an init as PID 1 when the
definition enables it, SIGTERM through ``podman stop`` with the container's stop timeout,
SIGKILL through ``podman kill``. ``--network=host`` lets the task reach the emulator and the
agent's task-protection endpoint on loopback, as ECS_AGENT_URI says.

``ProcessRunner`` runs the locally built binary with the same command and environment, for
machines without podman or without the images.

``choose`` takes the container path only when the image holds the very binary the process
path would run (images are labelled with its SHA-256 by deploy/docker/images.sh), so a
stale image never stands in for a fresh build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Mapping, Protocol

from . import processes

REPO_ROOT = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = REPO_ROOT / "deploy" / "docker" / "containers.conf"
# This checkout's tag (deploy/docker/images.sh): checkouts sharing a machine keep apart.
IMAGE_TAG = "dev-" + hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:8]
WORKER_IMAGE = f"localhost/geobatch-worker:{IMAGE_TAG}"
BINARY_LABEL = "io.geobatch.binary-sha256"
# Containers of this driver carry its pid, so a later driver can remove those a dead one left.
DRIVER_LABEL = "io.geobatch.local-driver"
PODMAN_TIMEOUT_SECS = 60.0


class TaskRunner(Protocol):
    """Starts, stops and kills the tasks of one agent."""

    description: str

    def start(self, task_id: str, container: Mapping[str, Any], env: Mapping[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        """Starts the task; the returned process exits when the task does, with its status."""
        ...

    def stop(self, task_id: str, process: subprocess.Popen[bytes], stop_timeout_secs: float) -> None:
        """SIGTERM, as ECS's StopTask; returns at once."""
        ...

    def kill(self, task_id: str, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL, as an out-of-memory kill or a lost instance."""
        ...

    def cleanup(self) -> None:
        """Removes whatever the tasks left behind once they have all exited."""
        ...


class ProcessRunner:
    """Tasks as processes of the locally built ``geobatch-worker``."""

    def __init__(self, worker_binary: Path, base_env: Mapping[str, str], why: str = "") -> None:
        self._binary = worker_binary
        self._base_env = dict(base_env)
        self.description = f"worker tasks run as processes of {worker_binary}" + (f" ({why})" if why else "")

    def start(self, task_id: str, container: Mapping[str, Any], env: Mapping[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        command = [str(self._binary), *container.get("command", [])]
        return processes.spawn(command, env={**self._base_env, **env}, stdout=log, stderr=log)

    def stop(self, task_id: str, process: subprocess.Popen[bytes], stop_timeout_secs: float) -> None:
        processes.signal_group(process, signal.SIGTERM)

    def kill(self, task_id: str, process: subprocess.Popen[bytes]) -> None:
        processes.signal_group(process, signal.SIGKILL)

    def cleanup(self) -> None:
        pass


class PodmanRunner:
    """Tasks as containers of the worker image, run by podman."""

    def __init__(self, image_id: str, base_env: Mapping[str, str], podman: str = "podman") -> None:
        self._image = image_id
        self._podman = podman
        self._env = podman_env(base_env)
        self._driver = str(os.getpid())
        self.description = f"worker tasks run as containers of {WORKER_IMAGE} (image {image_id[:12]}) with podman"
        self._remove_orphans()

    @staticmethod
    def container_name(task_id: str) -> str:
        return f"geobatch-task-{task_id}"

    def argv(self, task_id: str, container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        """The ``podman run`` command for one task of the container definition."""
        argv = [self._podman, "run", "--rm", "--name", self.container_name(task_id), "--network=host"]
        argv += ["--label", f"{DRIVER_LABEL}={self._driver}"]
        if "stopTimeout" in container:
            argv += ["--stop-timeout", str(int(container["stopTimeout"]))]
        if container.get("linuxParameters", {}).get("initProcessEnabled"):
            argv.append("--init")
        if container.get("readonlyRootFilesystem"):
            argv.append("--read-only")
        # A task volume without a host path is scratch space the task's containers share and
        # that goes with the task: an anonymous volume, removed with the container (--rm).
        argv += [arg for mount in container.get("mountPoints", []) for arg in ("--volume", mount["containerPath"])]
        # Names only: podman takes the values from its own environment, so they stay out of
        # this machine's process list.
        argv += [arg for name in sorted(env) for arg in ("--env", name)]
        return [*argv, self._image, *container.get("command", [])]

    def start(self, task_id: str, container: Mapping[str, Any], env: Mapping[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return processes.spawn(self.argv(task_id, container, env), env={**self._env, **env}, stdout=log, stderr=log)

    def stop(self, task_id: str, process: subprocess.Popen[bytes], stop_timeout_secs: float) -> None:
        # podman stop waits for the container (up to the timeout, then SIGKILLs it): off the
        # agent's thread.
        command = [self._podman, "stop", "--time", str(int(stop_timeout_secs)), self.container_name(task_id)]
        threading.Thread(target=self._podman_quietly, args=(command,), name=f"stop-{task_id}", daemon=True).start()

    def kill(self, task_id: str, process: subprocess.Popen[bytes]) -> None:
        if not self._podman_quietly([self._podman, "kill", "--signal", "KILL", self.container_name(task_id)]):
            # Not created yet, or gone already: end the podman client; cleanup removes the rest.
            processes.signal_group(process, signal.SIGKILL)

    def cleanup(self) -> None:
        self._remove(f"label={DRIVER_LABEL}={self._driver}")

    def _remove_orphans(self) -> None:
        listed = self._podman_output(["ps", "--all", "--filter", f"label={DRIVER_LABEL}", "--format", f'{{{{index .Labels "{DRIVER_LABEL}"}}}}'])
        for driver in sorted(set(listed.split())):
            if driver.isdigit() and not _alive(int(driver)):
                self._remove(f"label={DRIVER_LABEL}={driver}")

    def _remove(self, label_filter: str) -> None:
        for container_id in self._podman_output(["ps", "--all", "--quiet", "--filter", label_filter]).split():
            self._podman_quietly([self._podman, "rm", "--force", container_id])

    def _podman_output(self, args: list[str]) -> str:
        done = subprocess.run([self._podman, *args], env=self._env, capture_output=True, text=True, timeout=PODMAN_TIMEOUT_SECS, check=False)
        return done.stdout if done.returncode == 0 else ""

    def _podman_quietly(self, command: list[str]) -> bool:
        try:
            done = subprocess.run(command, env=self._env, capture_output=True, timeout=PODMAN_TIMEOUT_SECS, check=False)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0


def podman_env(base_env: Mapping[str, str]) -> dict[str, str]:
    """The environment podman runs in: this repository's containers.conf unless one is set."""
    return {"CONTAINERS_CONF": str(CONTAINERS_CONF), **base_env}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def worker_image_for(worker_binary: Path, base_env: Mapping[str, str]) -> tuple[str | None, str]:
    """The id of the worker image built from `worker_binary`, or None and why not."""
    podman = shutil.which("podman", path=base_env.get("PATH"))
    if podman is None:
        return None, "podman is not installed"
    inspected = subprocess.run(
        [podman, "image", "inspect", "--format", f'{{{{.Id}}}} {{{{index .Labels "{BINARY_LABEL}"}}}}', WORKER_IMAGE],
        env=podman_env(base_env),
        capture_output=True,
        text=True,
        timeout=PODMAN_TIMEOUT_SECS,
        check=False,
    )
    if inspected.returncode != 0:
        return None, f"no image {WORKER_IMAGE}: `make images` builds it"
    image_id, _, built_from = inspected.stdout.strip().partition(" ")
    if built_from != sha256_of(worker_binary):
        return None, f"{WORKER_IMAGE} was built from another {worker_binary.name} than {worker_binary}: `make images` rebuilds it"
    return image_id, ""


def choose(mode: str, worker_binary: Path, base_env: Mapping[str, str]) -> TaskRunner:
    """The runner for `mode`: "container", "process", or "auto" (containers when possible)."""
    if mode not in ("auto", "container", "process"):
        raise SystemExit(f"unknown worker runner {mode!r}: container, process or auto")
    if mode == "process":
        return ProcessRunner(worker_binary, base_env, "asked for")
    image_id, why = worker_image_for(worker_binary, base_env)
    if image_id is not None:
        return PodmanRunner(image_id, base_env)
    if mode == "container":
        raise SystemExit(f"worker containers asked for, but {why}")
    return ProcessRunner(worker_binary, base_env, why)
