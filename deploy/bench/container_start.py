#!/usr/bin/env python3
"""Image sizes, and worker start to its first SQS ReceiveMessage (`make bench-images`).

Starts a private moto server, a queue and buckets, and a loopback recording proxy that the
worker's SQS client is pointed at (AWS_ENDPOINT_URL_SQS), which notes the moment the first
ReceiveMessage request arrives. Then it starts the worker N times each way — as a container
of the image, run as the local stack's agent runs a task (podman, --init, read-only root,
scratch volume, --network=host), and as a plain process of the same binary — and reports the
time from starting `podman run` (or the process) to that first ReceiveMessage.

Prints Markdown tables ready for docs/benchmarks.md, with the load average.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from geobatch_local import runners  # noqa: E402
from geobatch_local.emulator import Emulator, base_env, free_port  # noqa: E402
from geobatch_local.pipeline import VENV_MOTO  # noqa: E402
from geobatch_local.processes import Supervisor  # noqa: E402

IMAGES = [
    "localhost/geobatch-base:nonroot",
    "localhost/geobatch-base:debug-nonroot",
    runners.WORKER_IMAGE,
    f"localhost/geobatch-controller:{runners.IMAGE_TAG}",
    "localhost/geobatch-worker:release",
    "localhost/geobatch-controller:release",
]
# What the task definition gives the container, as the local stack reads it from the stack.
CONTAINER = {
    "command": ["run"],
    "stopTimeout": 10,
    "linuxParameters": {"initProcessEnabled": True},
    "readonlyRootFilesystem": True,
    "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/tmp"}],
}


class FirstReceive:
    """A forwarding proxy to the emulator that notes when the first ReceiveMessage arrives."""

    def __init__(self, upstream_port: int) -> None:
        self.arrived = threading.Event()
        self.at = 0.0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("X-Amz-Target", "").endswith(".ReceiveMessage") and not recorder.arrived.is_set():
                    recorder.at = time.monotonic()
                    recorder.arrived.set()
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", self.path, body=body, headers=headers)
                reply = upstream.getresponse()
                payload = reply.read()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        self.arrived.clear()


def image_sizes() -> list[tuple[str, int]]:
    sizes = []
    for image in IMAGES:
        done = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Size}}", image],
            env=runners.podman_env(base_env()),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            sizes.append((image, int(done.stdout.strip())))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-dir", type=Path, default=ROOT / "target" / "debug", help="holds the geobatch-worker this checkout's image was built from")
    parser.add_argument("--runs", type=int, default=5, help="starts per way (default 5)")
    args = parser.parse_args()
    worker = args.target_dir / "geobatch-worker"
    image_id, why = runners.worker_image_for(worker, base_env())
    if image_id is None:
        print(f"cannot measure containers: {why}", file=sys.stderr)
        return 1

    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print("\n| image | size (MB) |\n|---|---:|")
    for image, size in image_sizes():
        print(f"| `{image}` | {size / 1e6:.1f} |")

    supervisor = Supervisor()
    scratch = tempfile.TemporaryDirectory()
    try:
        with open(Path(scratch.name) / "moto.log", "wb") as moto_log:
            emulator = Emulator.start(supervisor, VENV_MOTO, moto_log)
            sqs, s3 = emulator.client("sqs"), emulator.client("s3")
            queue_url = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
            for bucket in ("bench-input", "bench-output"):
                s3.create_bucket(Bucket=bucket)
            proxy = FirstReceive(int(emulator.endpoint_url.rsplit(":", 1)[1]))
            env = {
                **emulator.child_env(),
                "AWS_ENDPOINT_URL_SQS": proxy.url,
                "GEOBATCH_QUEUE_URL": queue_url,
                "GEOBATCH_OUTPUT": "s3://bench-output/results/",
                "GEOBATCH_ALLOWED_BUCKETS": "bench-input",
                "GEOBATCH_RECEIVE_WAIT": "1s",
            }
            ways = {
                "container (podman run --init --read-only, runc)": runners.PodmanRunner(image_id, base_env()),
                "process (same binary)": runners.ProcessRunner(worker, base_env()),
            }
            results: dict[str, list[float]] = {}
            for way, runner in ways.items():
                for run in range(args.runs):
                    proxy.reset()
                    task_id = f"bench-{run}-{time.monotonic_ns()}"
                    with open(Path(scratch.name) / f"{task_id}.log", "wb") as log:
                        started = time.monotonic()
                        process = runner.start(task_id, CONTAINER, {**env, "GEOBATCH_METRICS_ADDR": f"127.0.0.1:{free_port()}"}, log)
                        if not proxy.arrived.wait(60):
                            print(f"{way}: no ReceiveMessage within 60 s (log {log.name})", file=sys.stderr)
                            return 1
                        results.setdefault(way, []).append(proxy.at - started)
                        runner.stop(task_id, process, CONTAINER["stopTimeout"])
                        process.wait(timeout=60)
                        runner.cleanup()
            print(f"\n| start to first ReceiveMessage, {args.runs} runs | median (s) | min (s) | max (s) |\n|---|---:|---:|---:|")
            for way, times in results.items():
                print(f"| {way} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
    finally:
        supervisor.stop_all()
        scratch.cleanup()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
