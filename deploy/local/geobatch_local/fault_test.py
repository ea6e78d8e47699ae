"""The end-to-end fault test (part of `make test`).

The local pipeline processes the same set of files twice: once undisturbed (the clean
run), then again while worker tasks are killed at random with SIGKILL and stopped with
SIGTERM. The files include malformed ones and keys with spaces, plus signs and non-ASCII
characters. After the faulty run:

1. every good file has exactly one result, byte-identical to the clean run's, and every
   write of it (the output bucket is versioned) was identical too;
2. every bad file has an error report identical to the clean run's, or its message is in
   the dead-letter queue (only for transient errors), and there is no other output;
3. the queue is empty;
4. the service and the Auto Scaling Group are back at zero;
5. no task was stopped by the controller (scale-in, draining or instance termination) while
   it held scale-in protection;
6. the faults really happened: at least a few SIGKILLs and SIGTERMs hit busy workers;
7. a Spot interruption announced (through the instance metadata stand-in) to an instance
   whose worker was busy made it release its messages at once; the files were completed
   elsewhere (checks 1-3). The time from the notice to each release is printed.

It prints one line per check and a closing "N passed, M failed" line, and exits non-zero
if any check failed. The fault schedule is seeded; the assertions do not depend on timing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

from .imds import interruption_releases
from .pipeline import LocalPipeline, Settings
from .processes import Interrupted, raise_on_termination_signals

PARAMETERS = {
    "PollIntervalSeconds": "1",
    "ScaleInStabilizationSeconds": "5",
    "IdleWindowSeconds": "5",
    "TargetP95Seconds": "20",
    "ColdStartSeconds": "5",
    "TasksPerInstance": "2",
    "MaxInstances": "3",
    "MaxTasks": "6",
    "WorkerConcurrency": "2",
    # Short, so a message whose worker was SIGKILLed comes back quickly.
    "QueueVisibilityTimeoutSeconds": "10",
    # High enough that a file hit by several kills still gets through, not into the DLQ.
    "MaxReceiveCount": "20",
    "WorkerStopTimeoutSeconds": "15",
    "WorkerShutdownGraceSeconds": "5",
}

GOOD_FILES = 230
MIN_KILLS = 3
MIN_TERMS = 3
KEY_STYLES = (
    "plain/file-{n:03d}.geojson",
    "with spaces/survey area {n:03d}.geojson",
    "plus+signs/a+b {n:03d}+c.geojson",
    "ünïcødé/Zürich–東京 {n:03d}.geojson",
    "mixed/100% done & more {n:03d}.geojson",
)
BAD_BODIES = (
    ("truncated", b'{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[1,'),
    ("not json", b"this is not json at all\n"),
    ("not geojson", b'{"hello": "world"}'),
    ("topojson", b'{"type":"Topology","objects":{},"arcs":[]}'),
    ("empty", b""),
)


def make_files(seed: int) -> tuple[list[tuple[str, bytes]], set[str]]:
    """Deterministic test files: (key, bytes) pairs and the set of keys that are bad."""
    rng = random.Random(seed)
    files: list[tuple[str, bytes]] = []
    for n in range(GOOD_FILES):
        features = []
        for i in range(rng.randint(5, 400)):
            if rng.random() < 0.5:
                geometry = {"type": "Point", "coordinates": [round(rng.uniform(-180, 180), 6), round(rng.uniform(-85, 85), 6)]}
            else:
                lon, lat, size = rng.uniform(-170, 170), rng.uniform(-80, 80), rng.uniform(0.01, 2)
                ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
                geometry = {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}
            features.append({"type": "Feature", "properties": {"id": i, "name": f"feature {i}"}, "geometry": geometry})
        body = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":")).encode()
        files.append((KEY_STYLES[n % len(KEY_STYLES)].format(n=n), body))
    bad: set[str] = set()
    for n, (label, body) in enumerate(BAD_BODIES * 4):
        key = f"bad files/{label} {n:02d}+é.geojson"
        files.append((key, body))
        bad.add(key)
    rng.shuffle(files)
    return files, bad


class Chaos:
    """Kills (SIGKILL) and stops (SIGTERM) random busy worker tasks on a seeded schedule,
    and once announces a Spot interruption to the instance of a busy one.

    The notice's time is the moment it is announced: no time is left, so the worker must
    hand back everything it holds at once rather than finish it (with two minutes left it
    would rightly finish files as small as these).
    """

    def __init__(self, pipeline: LocalPipeline, seed: int, interval_secs: float = 0.8) -> None:
        self._pipeline = pipeline
        self._rng = random.Random(seed)
        self._interval = interval_secs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.kills_busy = 0
        self.terms_busy = 0
        self.kills = 0
        self.terms = 0
        # (instance id, when the notice became visible, the tasks on that instance then)
        self.interruption: tuple[str, float, list[str]] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        agent = self._pipeline.agent
        assert agent is not None
        while not self._stop.wait(self._interval):
            tasks = sorted(agent.live_tasks(), key=lambda t: t.task_arn)
            busy = [t for t in tasks if t.protected(time.time())]
            # Keep at least one worker alive so the run always makes progress.
            if len(tasks) < 2 or not busy:
                continue
            victim = self._rng.choice(busy)
            if self.interruption is None:
                tasks_there = [t.task_id for t in tasks if t.instance_id == victim.instance_id]
                # Leave another instance to take the work over.
                if len({t.instance_id for t in tasks}) >= 2:
                    at = agent.interrupt_instance(victim.instance_id, notice_secs=0)
                    self.interruption = (victim.instance_id, at, tasks_there)
                    continue
            if self._rng.random() < 0.5:
                agent.kill(victim.task_arn)
                self.kills += 1
                self.kills_busy += 1
            else:
                agent.stop_externally(victim.task_arn, "stopped (SIGTERM) by fault injection")
                self.terms += 1
                self.terms_busy += 1


def wait_for_outputs(pipeline: LocalPipeline, expected: dict[str, str], timeout_secs: float) -> set[str]:
    """Waits until every expected output key exists and the queue is empty; returns missing keys."""
    deadline = time.monotonic() + timeout_secs
    missing = set(expected.values())
    last_report = 0.0
    while time.monotonic() < deadline:
        missing = set(expected.values()) - pipeline.output_keys()
        visible, in_flight, delayed = pipeline.queue_counts()
        if not missing and visible == in_flight == delayed == 0:
            return set()
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            print(f"   {len(expected) - len(missing)}/{len(expected)} outputs, queue {visible} visible / {in_flight} in flight")
        time.sleep(1)
    return missing


def clear_outputs(pipeline: LocalPipeline) -> None:
    s3 = pipeline.emulator.client("s3")
    bucket = pipeline.stack.output_bucket
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])


def all_versions(pipeline: LocalPipeline) -> dict[str, list[bytes]]:
    s3 = pipeline.emulator.client("s3")
    bucket, prefix = pipeline.stack.output_bucket, pipeline.stack.output_prefix
    versions: dict[str, list[bytes]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])["Body"].read()
            versions.setdefault(entry["Key"][len(prefix) :], []).append(body)
    return versions


def outcome_status(document: bytes) -> str | None:
    """The status (ok or error) of an outcome document, None if it is not one."""
    try:
        return json.loads(document).get("status")
    except (json.JSONDecodeError, AttributeError):
        return None


def dlq_keys(pipeline: LocalPipeline) -> list[str]:
    """Object keys named by the messages in the dead-letter queue (drains it)."""
    sqs = pipeline.emulator.client("sqs")
    keys: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=pipeline.stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return keys
        for message in messages:
            try:
                records = json.loads(message["Body"]).get("Records", [])
            except (json.JSONDecodeError, AttributeError):
                records = []
            keys.extend(r["s3"]["object"]["key"] for r in records)
            sqs.delete_message(QueueUrl=pipeline.stack.dlq_url, ReceiptHandle=message["ReceiptHandle"])


def run(target_dir: Path, out_dir: Path, seed: int, timeout_secs: float) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    files, bad = make_files(seed)
    results: list[tuple[bool, str]] = []

    def check(passed: bool, what: str) -> None:
        results.append((passed, what))
        print(f"   {'PASS' if passed else 'FAIL'}: {what}")

    settings = Settings(target_dir=target_dir, out_dir=out_dir, stack_name="geobatch-faults", parameters=PARAMETERS)
    with LocalPipeline(settings) as pipeline:
        assert pipeline.agent is not None
        # One outcome per source, at <output prefix><bucket>/<input key>.json; the input key
        # has the input prefix. Good files get status ok, malformed ones status error.
        prefix = pipeline.stack.input_prefix
        bad = {prefix + key for key in bad}
        files = [(prefix + key, body) for key, body in files]
        good = [key for key, _ in files if key not in bad]
        expected = {key: pipeline.outcome_key(key) for key, _ in files}
        s3 = pipeline.emulator.client("s3")
        s3.put_bucket_versioning(Bucket=pipeline.stack.output_bucket, VersioningConfiguration={"Status": "Enabled"})

        print(f"4. clean run: {len(files)} files ({len(bad)} malformed)")
        started = time.monotonic()
        pipeline.upload(files, under_input_prefix=False)
        missing = wait_for_outputs(pipeline, expected, timeout_secs)
        check(not missing, f"clean run produced every output ({len(missing)} missing) in {time.monotonic() - started:.0f} s")
        clean = pipeline.output_objects()
        clear_outputs(pipeline)

        print("5. faulty run: the same files again, workers killed (SIGKILL) and stopped (SIGTERM) at random")
        chaos = Chaos(pipeline, seed)
        started = time.monotonic()
        chaos.start()
        pipeline.upload(files, under_input_prefix=False)
        missing = wait_for_outputs(pipeline, expected, timeout_secs)
        chaos.stop()
        faulty_secs = time.monotonic() - started
        check(not missing, f"faulty run produced every output ({len(missing)} missing) in {faulty_secs:.0f} s")

        print("6. checking")
        versions = all_versions(pipeline)
        dead = set(dlq_keys(pipeline))

        def unchanged(key: str, status: str) -> bool:
            """Every version of the key's outcome is the clean run's, with this status."""
            written, first = versions.get(expected[key], []), clean.get(expected[key])
            return bool(written) and first is not None and outcome_status(first) == status and all(v == first for v in written)

        good_ok = [k for k in good if unchanged(k, "ok")]
        rewritten = sum(1 for k in good if len(versions.get(expected[k], [])) > 1)
        check(
            len(good_ok) == len(good) and len(clean) == len(expected),
            f"every good file ({len(good_ok)}/{len(good)}) has one result, byte-identical to the clean run's "
            f"({rewritten} were written more than once after a fault, every write identical)",
        )
        bad_ok = [k for k in bad if unchanged(k, "error") or k in dead]
        check(len(bad_ok) == len(bad), f"every bad file ({len(bad_ok)}/{len(bad)}) has its error outcome (or is in the DLQ: {len(dead & bad)})")
        unexpected = sorted(set(versions) - set(expected.values()))
        check(not unexpected and not (dead - bad), f"no other output ({unexpected[:3]}) and no good file in the DLQ ({sorted(dead - bad)[:3]})")
        check(pipeline.queue_counts() == (0, 0, 0), f"the queue is empty {pipeline.queue_counts()}")
        zero = pipeline.wait_scaled_to_zero(timeout_secs=120)
        check(zero, f"service and Auto Scaling Group back at zero (tasks, capacity, instances = {pipeline.sizes()})")
        events = list(pipeline.agent.events)
        by_controller = [
            e for e in events
            if e.get("protected") and (e["event"] == "task-lost-with-instance" or (e["event"] == "task-stopping" and "fault injection" not in e.get("reason", "")))
        ]
        check(not by_controller, f"no task stopped by the controller while protected ({by_controller[:2]})")
        check(
            chaos.kills_busy >= MIN_KILLS and chaos.terms_busy >= MIN_TERMS,
            f"faults happened: {chaos.kills_busy} SIGKILLs and {chaos.terms_busy} SIGTERMs of busy workers "
            f"(at least {MIN_KILLS} and {MIN_TERMS} required)",
        )
        if chaos.interruption is None:
            check(False, "a Spot interruption was announced to a busy instance (no moment with two instances and a busy worker)")
        else:
            instance, noticed_at, task_ids = chaos.interruption
            releases = interruption_releases(out_dir / "tasks", task_ids)
            delays = [at - noticed_at for at, _ in releases]
            check(
                bool(releases),
                f"Spot interruption of {instance}: {len(releases)} held message(s) released at once, "
                f"{', '.join(f'{d:.2f} s' for d in delays) or 'none'} after the notice; completed elsewhere (checks above)",
            )
        started_tasks = sum(1 for e in events if e["event"] == "task-started")
        print(f"   {started_tasks} tasks started over both runs; agent errors: {pipeline.agent.errors}")
        (out_dir / "agent-events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    passed = sum(1 for ok, _ in results if ok)
    failed = len(results) - passed
    print(f"fault test: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-dir", type=Path, required=True, help="where cargo put geobatch-worker and geobatch-controller")
    parser.add_argument("--out", type=Path, default=Path("out/fault-test"), help="logs and agent events (default: out/fault-test)")
    parser.add_argument("--seed", type=int, default=20261202, help="seed of the files and of the fault schedule")
    parser.add_argument("--timeout", type=float, default=300, help="seconds each run may take (default: 300)")
    args = parser.parse_args()
    raise_on_termination_signals()
    try:
        return run(args.target_dir, args.out.resolve(), args.seed, args.timeout)
    except Interrupted as signal_name:
        print(f"\ninterrupted ({signal_name}): stopped everything the test started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
