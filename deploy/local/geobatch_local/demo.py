"""`make demo`: the whole geobatch pipeline on this machine, end to end, in a few minutes.

It starts the emulator, deploys the production template into it, runs the controller and
the ECS agent stand-in, uploads the sample files that ship in deploy/samples/files, shows
progress (and once the operator's view, `geobatch-controller status`), each file's result
and the scaling timeline, waits until everything is back at zero, checks with `backfill
--dry-run` and `redrive --dry-run` that nothing is left to do, stops everything it started
and ends by printing the batch report (`geobatch-controller report`, files in
out/demo/report/). Exits 0 when all of it worked. Ctrl-C stops it cleanly at any point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .imds import interruption_releases
from .pipeline import LocalPipeline, Settings
from .processes import Interrupted, raise_on_termination_signals
from .timeline import render_svg, table, write_csv

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "files"

# Small windows so a demo run takes minutes; production defaults are in the template.
DEMO_PARAMETERS = {
    "PollIntervalSeconds": "1",
    "ScaleInStabilizationSeconds": "10",
    "IdleWindowSeconds": "10",
    "TargetP95Seconds": "20",
    "ColdStartSeconds": "5",
    "TasksPerInstance": "2",
    "MaxInstances": "3",
    "MaxTasks": "6",
    "WorkerConcurrency": "1",
    "QueueVisibilityTimeoutSeconds": "30",
    "WorkerStopTimeoutSeconds": "20",
    "WorkerShutdownGraceSeconds": "10",
}


WAVES = 3
WAVE_GAP_SECS = 12.0


def sample_files() -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(SAMPLES)), p.read_bytes()) for p in SAMPLES.rglob("*.geojson"))


def summarise(report: bytes) -> str:
    """One line about a result or an error report, whatever fields the worker adds."""
    try:
        document = json.loads(report)
    except json.JSONDecodeError:
        return f"unreadable report ({len(report)} bytes)"
    if "error" in document or "kind" in document:
        error = document.get("error", document)
        return f"ERROR {error.get('kind', '?')}: {error.get('message', '')}"[:160]
    analysis = document.get("analysis", document)
    scalars = [f"{k}={v}" for k, v in analysis.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    nested = [k for k, v in analysis.items() if isinstance(v, (dict, list))]
    text = ", ".join(scalars[:6])
    if nested:
        text += f" (+ {', '.join(nested[:4])})"
    return text[:200]


def run(target_dir: Path, out_dir: Path, timeout_secs: float, spot_notice_secs: float | None = None) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sample_files()
    settings = Settings(target_dir=target_dir, out_dir=out_dir, stack_name="geobatch-demo", parameters=DEMO_PARAMETERS)
    ok = True
    with LocalPipeline(settings) as pipeline:
        assert pipeline.sampler is not None and pipeline.agent is not None
        total = sum(len(b) for _, b in files)
        destination = f"s3://{pipeline.stack.input_bucket}/{pipeline.stack.input_prefix}"
        print(
            f"4. uploading the {len(files)} sample files ({total / 1e6:.1f} MB) to {destination}, "
            f"{WAVES} times {WAVE_GAP_SECS:.0f} s apart (as batch-1/ ... batch-{WAVES}/) to show scaling"
        )
        expected: dict[str, str] = {}
        for wave in range(1, WAVES + 1):
            batch = [(f"batch-{wave}/{key}", body) for key, body in files]
            pipeline.upload(batch)
            # Outcomes land at <output prefix><bucket>/<input key>.json; the input key has the input prefix.
            expected.update({key: pipeline.outcome_key(pipeline.stack.input_prefix + key) for key, _ in batch})
            print(f"   batch {wave}: uploaded")
            if wave == 2:
                # Mid-batch, the view an operator gets of the pool.
                ok &= show_status(pipeline)
            if wave < WAVES:
                time.sleep(WAVE_GAP_SECS)

        print("5. processing (t: queue visible/in flight, tasks running/wanted, instances, outputs)")
        deadline = time.monotonic() + timeout_secs
        done: dict[str, str] = {}
        interruption: tuple[str, float, list[str]] | None = None
        while time.monotonic() < deadline:
            if spot_notice_secs is not None and interruption is None:
                interruption = interrupt_a_busy_instance(pipeline, spot_notice_secs)
            keys = pipeline.output_keys()
            for key, outcome_key in expected.items():
                if outcome_key in keys:
                    done[key] = outcome_key
            sample = pipeline.sampler.latest()
            if sample:
                print(
                    f"   t={sample.secs:5.0f}s  queue {sample.visible:3d}/{sample.in_flight:<3d}  "
                    f"tasks {sample.running_tasks}/{sample.desired_tasks} ({sample.protected_tasks} busy)  "
                    f"instances {sample.instances}/{sample.desired_instances}  outputs {len(done)}/{len(expected)}"
                )
            if len(done) == len(expected):
                break
            time.sleep(2)
        if len(done) != len(expected):
            ok = False
            print(f"   timed out: no output for {sorted(set(expected) - set(done))}")

        if interruption is not None:
            instance, noticed_at, task_ids = interruption
            releases = interruption_releases(out_dir / "tasks", task_ids)
            delays = ", ".join(f"{at - noticed_at:.2f} s" for at, _ in releases) or "none (its workers held nothing, or kept what would finish in time)"
            print(f"   Spot interruption of {instance}: messages released after the notice: {delays}")
        print(f"   results in s3://{pipeline.stack.output_bucket}/{pipeline.stack.output_prefix}:")
        objects = pipeline.output_objects()
        for key in sorted(k for k in done if k.startswith("batch-1/")):
            print(f"   - {done[key]}\n       {summarise(objects.get(done[key], b''))}")
        print(f"   (and the same for batch-2/ ... batch-{WAVES}/: {len(done)} outputs in all)")

        print("6. waiting for the controller to scale back to zero")
        if pipeline.wait_scaled_to_zero(timeout_secs=120):
            print("   queue empty, service at 0 tasks, Auto Scaling Group at 0 instances")
        else:
            ok = False
            print(f"   not back at zero after 120 s: {pipeline.look()}")
        ok &= nothing_left_to_do(pipeline)
        report_code, report_text = batch_report(pipeline, out_dir / "report")
        ok &= report_code == 0
        # A few more samples so the plot shows the flat end.
        time.sleep(2)
        pipeline.sampler.stop()
        samples = pipeline.sampler.samples
        events = pipeline.agent.events

    svg_path, csv_path = out_dir / "timeline.svg", out_dir / "timeline.csv"
    svg_path.write_text(render_svg(samples, "geobatch make demo: queue, tasks and instances over time"))
    write_csv(samples, csv_path)
    (out_dir / "agent-events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    print("   scaling timeline (one row per change):")
    print("\n".join("   " + line for line in table(samples).splitlines()))
    started = sum(1 for e in events if e["event"] == "task-started")
    lost_protected = [e for e in events if e["event"] in ("task-lost-with-instance", "task-stopping") and e.get("protected")]
    print(f"   {started} worker tasks ran; tasks stopped while protected: {len(lost_protected)}")
    print(f"   plot: {svg_path}  data: {csv_path}  agent events: {out_dir / 'agent-events.jsonl'}")
    print("7. stopped the workers, the controller and the emulator" + ("" if ok else " (the demo did NOT complete: see above)"))
    print(f"8. the batch report (geobatch-controller report, files in {out_dir / 'report'}):")
    print("\n".join("   " + line for line in report_text.splitlines()))
    return 0 if ok and not lost_protected else 1


def indented(text: str) -> str:
    return "\n".join("   | " + line for line in text.rstrip().splitlines())


def show_status(pipeline: LocalPipeline) -> bool:
    """The operator's view of the pool while the batch runs, once."""
    result = pipeline.batch_command("status", "--config", str(pipeline.controller_config), "--format", "text")
    print(f"   geobatch-controller status (exit {result.returncode}):\n{indented(result.stdout or result.stderr)}")
    return result.returncode == 0


def nothing_left_to_do(pipeline: LocalPipeline) -> bool:
    """After the batch: backfill finds every file done and the dead-letter queue is empty."""
    stack = pipeline.stack
    output = f"s3://{stack.output_bucket}/{stack.output_prefix}"
    backfill = pipeline.batch_command(
        "backfill", f"s3://{stack.input_bucket}/{stack.input_prefix}", "--queue-url", stack.queue_url,
        "--output", output, "--allowed-buckets", stack.input_bucket, "--dry-run", "--format", "text",
    )
    redrive = pipeline.batch_command("redrive", "--queue-url", stack.queue_url, "--dry-run", "--format", "text")
    print("   nothing left to do? backfill --dry-run and redrive --dry-run say:")
    for result in (backfill, redrive):
        print(indented(result.stdout.splitlines()[0] if result.stdout else result.stderr))
    return backfill.returncode == 0 and redrive.returncode == 0 and "would queue 0" in backfill.stdout


def batch_report(pipeline: LocalPipeline, report_dir: Path) -> tuple[int, str]:
    """`geobatch-controller report` of every outcome; its table is printed last."""
    stack = pipeline.stack
    result = pipeline.batch_command(
        "report", f"s3://{stack.output_bucket}/{stack.output_prefix}", "--out", str(report_dir), "--format", "text", "--rows", "12",
    )
    return result.returncode, result.stdout if result.returncode == 0 else f"report failed (exit {result.returncode}): {result.stderr}"


def interrupt_a_busy_instance(pipeline: LocalPipeline, notice_secs: float) -> tuple[str, float, list[str]] | None:
    """Announces a Spot interruption to the instance of a busy task, once another instance
    exists to take its work; returns (instance, when, its tasks) or None if not yet."""
    assert pipeline.agent is not None
    tasks = pipeline.agent.live_tasks()
    busy = sorted((t for t in tasks if t.protected(time.time())), key=lambda t: t.task_arn)
    if not busy or len({t.instance_id for t in tasks}) < 2:
        return None
    instance = busy[0].instance_id
    at = pipeline.agent.interrupt_instance(instance, notice_secs)
    print(f"   announced a Spot interruption of {instance} (busy), {notice_secs:.0f} s ahead")
    return instance, at, [t.task_id for t in tasks if t.instance_id == instance]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-dir", type=Path, required=True, help="where cargo put geobatch-worker and geobatch-controller")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="logs, timeline plot and data (default: out/demo)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for all results (default: 240)")
    parser.add_argument(
        "--spot-interruption",
        type=float,
        metavar="NOTICE_SECS",
        help="announce a Spot interruption this many seconds ahead to a busy instance (0: no time left, "
        "its worker hands back every file it holds); off by default",
    )
    args = parser.parse_args()
    raise_on_termination_signals()
    try:
        return run(args.target_dir, args.out.resolve(), args.timeout, args.spot_interruption)
    except Interrupted as signal_name:
        print(f"\ninterrupted ({signal_name}): stopped everything the demo started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
