"""The built images (``make images``), inspected and run with podman against the emulator.

What they check: entrypoint, command and non-root user; ``--help`` in both images; no shell
in the controller image and no package manager in either; a worker container configured as
the task definition configures it processes files from the stack's queue; ``podman stop``
in the middle of a file ends it cleanly (finished or released, exit 0); an ``--exec`` job,
with the user's ``process_file`` added the documented way, runs in the container under the
init the task definition enables, which reaps what the job leaves behind (without the init,
the worker as PID 1 does).

Without podman or the images these tests skip, saying why, unless GEOBATCH_REQUIRE_IMAGES=1
(``make test`` sets it), where they fail instead.
"""

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

from geobatch_local import runners
from geobatch_local import stack as stack_module
from geobatch_local.emulator import Emulator, base_env, free_port
from geobatch_local.pipeline import VENV_MOTO
from geobatch_local.processes import Supervisor, wait_until

TARGET_DIR = runners.REPO_ROOT / "target" / "debug"
CONTROLLER_IMAGE = f"localhost/geobatch-controller:{runners.IMAGE_TAG}"
EXEC_IMAGE = f"localhost/geobatch-worker-exec-test:{runners.IMAGE_TAG}"
SAMPLES = runners.REPO_ROOT / "deploy" / "samples" / "files" / "earthquakes"
SHELLS = {"sh", "ash", "bash", "dash", "busybox"}
PACKAGE_MANAGERS = {"apt", "apt-get", "dpkg", "dpkg-deb", "rpm", "apk", "yum", "dnf", "microdnf"}

# The user's program, as docs/deploy.md says to add it. It sleeps so that a stop can land in
# the middle of a file, leaves a background child behind (the worker kills the job's process
# group once the shell exits, and the orphan is then PID 1's to reap), and prints JSON.
PROCESS_FILE = textwrap.dedent(
    """\
    #!/bin/sh
    sleep "${GEOBATCH_TEST_SLEEP:-0}"
    sleep 30 &
    printf '{"bytes": %s, "uid": %s}' "$(wc -c < "$1")" "$(id -u)"
    """
)


def podman(*args, check=True, timeout=120, **kwargs):
    return subprocess.run(
        ["podman", *args], env=runners.podman_env(base_env()), capture_output=True, text=True, check=check, timeout=timeout, **kwargs
    )


def images_or_skip():
    """Skips (or, under GEOBATCH_REQUIRE_IMAGES=1, fails) when the images cannot be run."""
    why = ""
    if shutil.which("podman") is None:
        why = "podman is not installed (deploy/docker/install-podman.sh)"
    else:
        missing = [i for i in (runners.WORKER_IMAGE, CONTROLLER_IMAGE) if podman("image", "exists", i, check=False).returncode]
        if missing:
            why = f"no image {', '.join(missing)}: run `make images`"
    if why and os.environ.get("GEOBATCH_REQUIRE_IMAGES") == "1":
        raise AssertionError(why)
    if why:
        raise unittest.SkipTest(why)


def file_names(image):
    """Every path in the image's filesystem."""
    created = podman("create", image).stdout.strip()
    try:
        exported = subprocess.run(
            ["podman", "export", created], env=runners.podman_env(base_env()), capture_output=True, check=True, timeout=120
        ).stdout
    finally:
        podman("rm", created)
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        return [member.name for member in archive.getmembers()]


class ImageContentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        images_or_skip()

    def test_images_run_their_binary_as_the_nonroot_user_and_hold_the_built_binary(self):
        for image, binary, command in (
            (runners.WORKER_IMAGE, "geobatch-worker", ["run"]),
            (CONTROLLER_IMAGE, "geobatch-controller", ["run", "--config", "/etc/geobatch/controller.toml"]),
        ):
            config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
            self.assertEqual(config["User"], "65532:65532", image)
            self.assertEqual(config["Entrypoint"], [f"/usr/local/bin/{binary}"], image)
            self.assertEqual(config["Cmd"], command, image)
            self.assertEqual(config["Labels"][runners.BINARY_LABEL], runners.sha256_of(TARGET_DIR / binary), image)
            self.assertEqual(podman("run", "--rm", "--entrypoint", "/usr/local/bin/" + binary, image, "--version", check=False).returncode, 0)

    def test_help_runs_in_both_images(self):
        for image, binary in ((runners.WORKER_IMAGE, "geobatch-worker"), (CONTROLLER_IMAGE, "geobatch-controller")):
            ran = podman("run", "--rm", image, "--help", check=False)
            self.assertEqual(ran.returncode, 0, ran.stderr)
            self.assertIn(f"Usage: {binary}", ran.stdout)

    def test_the_controller_has_no_shell_and_neither_image_a_package_manager(self):
        controller = {Path(name).name for name in file_names(CONTROLLER_IMAGE)}
        worker = {Path(name).name for name in file_names(runners.WORKER_IMAGE)}
        self.assertEqual(controller & SHELLS, set())
        self.assertEqual(controller & PACKAGE_MANAGERS, set())
        self.assertEqual(worker & PACKAGE_MANAGERS, set())
        self.assertIn("sh", worker, "--exec needs a shell in the worker image")
        ran = podman("run", "--rm", "--entrypoint", "sh", CONTROLLER_IMAGE, "-c", "true", check=False)
        self.assertNotEqual(ran.returncode, 0)


class RunnerChoiceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        images_or_skip()

    def test_an_image_of_another_build_is_not_used_and_the_reason_is_said(self):
        with tempfile.NamedTemporaryFile() as other:
            other.write(b"another build")
            other.flush()
            image_id, why = runners.worker_image_for(Path(other.name), base_env())
            self.assertIsNone(image_id)
            self.assertIn("built from another", why)
            chosen = runners.choose("auto", Path(other.name), base_env())
            self.assertIsInstance(chosen, runners.ProcessRunner)
            self.assertIn("make images", chosen.description)
            with self.assertRaises(SystemExit):
                runners.choose("container", Path(other.name), base_env())
        self.assertIsInstance(runners.choose("auto", TARGET_DIR / "geobatch-worker", base_env()), runners.PodmanRunner)

    def test_podman_run_follows_the_container_definition_and_keeps_values_out_of_argv(self):
        runner = runners.PodmanRunner("0123456789abcdef", base_env())
        container = {
            "command": ["run", "--exec", "process_file"],
            "stopTimeout": 20,
            "linuxParameters": {"initProcessEnabled": True},
            "readonlyRootFilesystem": True,
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/tmp"}],
        }
        argv = runner.argv("t1", container, {"AWS_SECRET_ACCESS_KEY": "s3cret", "GEOBATCH_QUEUE_URL": "http://q"})
        self.assertEqual(argv[-4:], ["0123456789abcdef", "run", "--exec", "process_file"])
        for expected in (["--stop-timeout", "20"], ["--volume", "/tmp"], ["--env", "AWS_SECRET_ACCESS_KEY"], ["--name", "geobatch-task-t1"]):
            self.assertIn(expected, [argv[i : i + 2] for i in range(len(argv) - 1)])
        self.assertIn("--init", argv)
        self.assertIn("--read-only", argv)
        self.assertIn("--network=host", argv)
        self.assertFalse(any("s3cret" in arg for arg in argv))
        bare = runner.argv("t2", {"command": ["run"]}, {})
        self.assertNotIn("--init", bare)
        self.assertNotIn("--read-only", bare)


class WorkerContainerTest(unittest.TestCase):
    """Worker containers run as the agent stand-in runs them, against one deployed stack."""

    @classmethod
    def setUpClass(cls):
        images_or_skip()
        if not VENV_MOTO.is_file():
            raise AssertionError(f"moto_server not found at {VENV_MOTO}: run `make venv`")
        cls.supervisor = Supervisor()
        cls.log = tempfile.TemporaryFile()
        cls.emulator = Emulator.start(cls.supervisor, VENV_MOTO, cls.log)
        cls.stack = stack_module.deploy(
            cls.emulator,
            "img",
            {
                "NamePrefix": "img",
                "WorkerImage": runners.WORKER_IMAGE,
                "ControllerImage": CONTROLLER_IMAGE,
                "WorkerStopTimeoutSeconds": "20",
                "WorkerShutdownGraceSeconds": "10",
            },
            report=lambda _message: None,
        )
        ecs = cls.emulator.client("ecs")
        service = ecs.describe_services(cluster=cls.stack.cluster, services=[cls.stack.service])["services"][0]
        cls.container = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]["containerDefinitions"][0]
        cls.scratch = tempfile.TemporaryDirectory()
        context = Path(cls.scratch.name) / "context"
        context.mkdir()
        (context / "process_file").write_text(PROCESS_FILE)
        (context / "Containerfile").write_text(
            f"FROM {runners.WORKER_IMAGE}\nCOPY --chmod=0755 process_file /usr/local/bin/process_file\n"
        )
        podman("build", "--quiet", "-t", EXEC_IMAGE, str(context))
        cls.exec_image_id = podman("image", "inspect", "--format", "{{.Id}}", EXEC_IMAGE).stdout.strip()

    @classmethod
    def tearDownClass(cls):
        podman("rmi", "--force", EXEC_IMAGE, check=False)
        cls.scratch.cleanup()
        cls.supervisor.stop_all()
        cls.log.close()

    def setUp(self):
        # Whatever an earlier test left in the queue (a released file, the s3:TestEvent) goes.
        sqs = self.emulator.client("sqs")
        while messages := sqs.receive_message(QueueUrl=self.stack.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                sqs.delete_message(QueueUrl=self.stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
        s3 = self.emulator.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.output_bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=self.stack.output_bucket, Key=item["Key"])

    def start_worker(self, image_id, command=None, extra_env=None, init=True):
        """One worker container as the agent starts a task; returns (runner, task id, process)."""
        runner = runners.PodmanRunner(image_id, base_env())
        task_id = f"test-{time.monotonic_ns()}"
        container = dict(self.container, command=command or self.container["command"])
        if not init:
            container.pop("linuxParameters")
        env = {
            **self.emulator.child_env(),
            **{e["name"]: e["value"] for e in self.container["environment"]},
            "GEOBATCH_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            # Short polls: a stopped worker's long poll would otherwise stay open in the
            # emulator and take the next test's message with it.
            "GEOBATCH_RECEIVE_WAIT": "1s",
            **(extra_env or {}),
        }
        log = open(Path(self.scratch.name) / f"{task_id}.log", "w+b")
        self.addCleanup(log.close)
        process = runner.start(task_id, container, env, log)
        self.addCleanup(lambda: (runner.kill(task_id, process), process.wait(timeout=60), runner.cleanup()))
        self.log_of = log
        return runner, task_id, process

    def task_log(self):
        self.log_of.seek(0)
        return self.log_of.read().decode(errors="replace")

    def upload(self, names):
        s3 = self.emulator.client("s3")
        for name in names:
            s3.put_object(Bucket=self.stack.input_bucket, Key=self.stack.input_prefix + name, Body=(SAMPLES / name).read_bytes())

    def results(self):
        """Outcomes by input file name (the worker writes <prefix><bucket>/<key>.json)."""
        s3 = self.emulator.client("s3")
        under = f"{self.stack.output_prefix}{self.stack.input_bucket}/{self.stack.input_prefix}"
        listed = s3.list_objects_v2(Bucket=self.stack.output_bucket, Prefix=under).get("Contents", [])
        return {
            item["Key"][len(under) :]: json.loads(
                s3.get_object(Bucket=self.stack.output_bucket, Key=item["Key"])["Body"].read()
            )
            for item in listed
        }

    def queue_counts(self):
        attrs = self.emulator.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def stop(self, runner, task_id, process):
        runner.stop(task_id, process, float(self.container["stopTimeout"]))
        return process.wait(timeout=float(self.container["stopTimeout"]) + 30)

    def test_a_worker_container_processes_files_from_the_queue_and_stops_with_exit_0(self):
        names = sorted(p.name for p in SAMPLES.iterdir())[:3]
        self.upload(names)
        runner, task_id, process = self.start_worker(runners.worker_image_for(TARGET_DIR / "geobatch-worker", base_env())[0])
        self.assertTrue(wait_until(lambda: len(self.results()) == 3, 120), self.task_log())
        results = self.results()
        self.assertEqual(sorted(results), sorted(f"{name}.json" for name in names))
        for name in names:
            self.assertEqual(results[f"{name}.json"]["status"], "ok", results[f"{name}.json"])
            self.assertEqual(results[f"{name}.json"]["source"]["size_bytes"], (SAMPLES / name).stat().st_size)
        self.assertTrue(wait_until(lambda: self.queue_counts() == (0, 0), 30))
        self.assertEqual(self.stop(runner, task_id, process), 0, self.task_log())

    def test_podman_stop_mid_file_finishes_or_releases_it_and_exits_0(self):
        name = sorted(p.name for p in SAMPLES.iterdir())[0]
        runner, task_id, process = self.start_worker(
            self.exec_image_id, command=["run", "--exec", "process_file"], extra_env={"GEOBATCH_TEST_SLEEP": "15"}
        )
        self.upload([name])
        # In flight: received (hidden in the queue) and the job running in the container. The
        # job sleeps longer than the shutdown grace (10 s), so a slow `podman top` on a busy
        # machine still sees it, and the stop below lands in its middle.
        self.assertTrue(wait_until(lambda: self.queue_counts()[1] == 1, 60), self.task_log())
        self.assertTrue(
            wait_until(lambda: ["sleep", "15"] in self.process_commands(runner.container_name(task_id)), 30),
            self.task_log(),
        )
        started = time.monotonic()
        self.assertEqual(self.stop(runner, task_id, process), 0, self.task_log())
        self.assertLess(time.monotonic() - started, float(self.container["stopTimeout"]), "stopped before the SIGKILL")
        finished = f"{name}.json" in self.results()
        released = self.queue_counts() == (1, 0)
        self.assertTrue(finished or released, (self.results(), self.queue_counts(), self.task_log()))

    def test_an_exec_job_runs_as_nonroot_under_an_init_that_reaps_what_it_leaves(self):
        name = sorted(p.name for p in SAMPLES.iterdir())[1]
        runner, task_id, process = self.start_worker(self.exec_image_id, command=["run", "--exec", "process_file"])
        self.upload([name])
        self.assertTrue(wait_until(lambda: f"{name}.json" in self.results(), 60), self.task_log())
        result = self.results()[f"{name}.json"]
        self.assertEqual(result["status"], "ok", result)
        self.assertEqual(result["exec_output"], {"bytes": (SAMPLES / name).stat().st_size, "uid": 65532})
        container = runner.container_name(task_id)
        init = podman("exec", container, "cat", "/proc/1/cmdline").stdout.split("\0")
        self.assertEqual(init[0], "/run/podman-init", "the task definition's initProcessEnabled: an init is PID 1")

        # The job's background `sleep 30` was killed with its process group; its parent had
        # exited, so the init adopted it and must have reaped it: no zombie remains.
        self.assertTrue(wait_until(lambda: "Z" not in self.process_states(container), 10), self.process_states(container))
        self.assertEqual(self.stop(runner, task_id, process), 0, self.task_log())

        # Without the init the worker itself is PID 1, and its reaper (worker/src/reaper.rs)
        # reaps the orphan instead: still no zombie.
        other = sorted(p.name for p in SAMPLES.iterdir())[2]
        runner, task_id, process = self.start_worker(self.exec_image_id, command=["run", "--exec", "process_file"], init=False)
        self.upload([other])
        self.assertTrue(wait_until(lambda: f"{other}.json" in self.results(), 60), self.task_log())
        container = runner.container_name(task_id)
        init = podman("exec", container, "cat", "/proc/1/cmdline").stdout.split("\0")
        self.assertEqual(init[0], "/usr/local/bin/geobatch-worker", "without the init the worker is PID 1")
        self.assertIn("running as PID 1: exited orphan processes are reaped", self.task_log())
        self.assertTrue(wait_until(lambda: "Z" not in self.process_states(container), 10), self.process_states(container))
        self.assertEqual(self.stop(runner, task_id, process), 0, self.task_log())

    def test_the_zombie_check_sees_an_orphan_that_pid_1_does_not_reap(self):
        """The check above can fail: a PID 1 that never waits (sleep) keeps its child a zombie."""
        name = f"geobatch-zombie-{time.monotonic_ns()}"
        started = podman("run", "--detach", "--rm", "--name", name, "--entrypoint", "sh", self.exec_image_id, "-c", "sleep 0 & exec sleep 60")
        self.addCleanup(lambda: podman("rm", "--force", "--time", "0", name, check=False))
        self.assertEqual(started.returncode, 0, started.stderr)
        self.assertTrue(wait_until(lambda: "Z" in self.process_states(name), 10), self.process_states(name))

    @staticmethod
    def process_commands(container):
        """The command line of every process in the container, as argument lists."""
        found = podman("exec", container, "sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done", check=False).stdout
        return [line.split() for line in found.splitlines() if line.strip()]

    @staticmethod
    def process_states(container):
        """The state letter of every process in the container (R, S, Z...)."""
        found = podman("exec", container, "sh", "-c", "cat /proc/[0-9]*/stat", check=False).stdout
        return [line.split(") ", 1)[1].split(" ", 1)[0] for line in found.splitlines() if ") " in line]


if __name__ == "__main__":
    unittest.main()
