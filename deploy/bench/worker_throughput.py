#!/usr/bin/env python3
"""Worker service throughput against the local emulator (`make bench-worker`).

Starts a private moto server on a free loopback port, queues ObjectCreated events for N
small GeoJSON files (a backlog, as after a burst of uploads), starts the release-built
`geobatch-worker run` configured by environment variables only, and measures the time
until every result exists. Then, optionally, streams one large object through the worker
with `--exec 'wc -c <'` and reports the worker's peak resident memory (VmHWM), which shows
that memory does not grow with object size.

Prints one Markdown table row per run, ready for docs/benchmarks.md.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.dumps(
    {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": i, "name": f"feature {i}"},
                "geometry": {"type": "Point", "coordinates": [i * 0.5, i * 0.25]},
            }
            for i in range(20)
        ],
    }
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"moto did not start on port {port}")


def clients(endpoint):
    kwargs = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}),
    )
    return boto3.client("s3", **kwargs), boto3.client("sqs", **kwargs)


def event(bucket, key, size):
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}},
                }
            ]
        }
    )


def peak_rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run_worker(binary, endpoint, queue_url, output, bucket, extra_env, log_path):
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "GEOBATCH_QUEUE_URL": queue_url,
            "GEOBATCH_OUTPUT": output,
            "GEOBATCH_ALLOWED_BUCKETS": bucket,
            "GEOBATCH_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "GEOBATCH_RECEIVE_WAIT": "1s",
        }
    )
    env.pop("ECS_AGENT_URI", None)
    env.update(extra_env)
    log = open(log_path, "ab")
    return subprocess.Popen([binary, "run"], env=env, stdout=subprocess.DEVNULL, stderr=log)


def stop_worker(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def count_results(s3, bucket, prefix):
    paginator = s3.get_paginator("list_objects_v2")
    return sum(
        len(page.get("Contents", []))
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
    )


def throughput_run(binary, endpoint, files, concurrency, log_path, run_id):
    s3, sqs = clients(endpoint)
    bucket, out = f"bench-in-{run_id}", f"bench-out-{run_id}"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=out)
    queue_url = sqs.create_queue(QueueName=f"bench-q-{run_id}")["QueueUrl"]
    body = SAMPLE.encode()
    for i in range(files):
        key = f"batch/file {i:04}.geojson"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    for start in range(0, files, 10):
        entries = [
            {
                "Id": str(i),
                "MessageBody": event(bucket, f"batch/file+{i:04}.geojson", len(body)),
            }
            for i in range(start, min(start + 10, files))
        ]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    started = time.monotonic()
    proc = run_worker(
        binary,
        endpoint,
        queue_url,
        f"s3://{out}/results/",
        bucket,
        {"GEOBATCH_CONCURRENCY": str(concurrency)},
        log_path,
    )
    done = 0
    while done < files:
        if proc.poll() is not None:
            sys.exit(f"the worker exited early with {proc.returncode}; see {log_path}")
        if time.monotonic() - started > 900:
            sys.exit(f"only {done}/{files} results after 900 s; see {log_path}")
        # Polling is kept slow: moto serves one request at a time per connection and every
        # listing competes with the worker for it.
        time.sleep(0.25)
        done = count_results(s3, out, "results/")
    elapsed = time.monotonic() - started
    rss = peak_rss_kib(proc.pid)
    code = stop_worker(proc)
    errors = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=out)
        for obj in page.get("Contents", [])
        if json.loads(s3.get_object(Bucket=out, Key=obj["Key"])["Body"].read()).get("status") != "ok"
    ]
    if errors:
        sys.exit(f"unexpected error outcomes: {errors[:5]}")
    return elapsed, rss, code


def large_object_run(binary, endpoint, size_mib, log_path):
    s3, sqs = clients(endpoint)
    bucket, out = "bench-large-in", "bench-large-out"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=out)
    queue_url = sqs.create_queue(QueueName="bench-large-q")["QueueUrl"]
    size = size_mib * 1024 * 1024
    with tempfile.TemporaryFile() as blob:
        chunk = b" " * (1024 * 1024)
        for _ in range(size_mib):
            blob.write(chunk)
        blob.seek(0)
        s3.upload_fileobj(blob, bucket, "large.geojson")
    sqs.send_message(QueueUrl=queue_url, MessageBody=event(bucket, "large.geojson", size))
    proc = run_worker(
        binary,
        endpoint,
        queue_url,
        f"s3://{out}/",
        bucket,
        {
            "GEOBATCH_EXEC": "wc -c <",
            "GEOBATCH_MAX_OBJECT_BYTES": str(size + 1),
        },
        log_path,
    )
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            sys.exit(f"the worker exited early; see {log_path}")
        try:
            result = json.loads(
                s3.get_object(Bucket=out, Key=f"{bucket}/large.geojson.json")["Body"].read()
            )
            break
        except s3.exceptions.NoSuchKey:
            time.sleep(0.2)
    elapsed = time.monotonic() - started
    rss = peak_rss_kib(proc.pid)
    stop_worker(proc)
    if result.get("exec_output") != size:
        sys.exit(f"wrong result for the large object: {result}")
    return elapsed, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--large-mib", type=int, default=256, help="0 to skip")
    parser.add_argument("--binary", default=str(ROOT / "target/release/geobatch-worker"))
    parser.add_argument("--moto", default=str(ROOT / ".venv/bin/moto_server"))
    args = parser.parse_args()
    concurrencies = args.concurrency or [os.cpu_count() or 1, 8, 32]

    port = free_port()
    moto = subprocess.Popen(
        [args.moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / "geobatch-bench-worker.log"
    log_path.write_bytes(b"")
    try:
        wait_port(port)
        print(f"worker log: {log_path}", file=sys.stderr)
        print("| files | concurrency | seconds | files/s | worker peak RSS (MiB) |")
        print("|---|---|---|---|---|")
        for run_id, concurrency in enumerate(concurrencies):
            elapsed, rss, code = throughput_run(
                args.binary, endpoint, args.files, concurrency, log_path, run_id
            )
            rss_mib = f"{rss / 1024:.1f}" if rss else "n/a"
            print(
                f"| {args.files} | {concurrency} | {elapsed:.2f} | "
                f"{args.files / elapsed:.1f} | {rss_mib} |",
                flush=True,
            )
            if code != 0:
                sys.exit(f"the worker exited with {code} after SIGTERM")
        if args.large_mib:
            elapsed, rss = large_object_run(args.binary, endpoint, args.large_mib, log_path)
            rss_mib = f"{rss / 1024:.1f}" if rss else "n/a"
            print(
                f"\nlarge object: {args.large_mib} MiB streamed through `--exec 'wc -c <'` "
                f"in {elapsed:.2f} s, worker peak RSS {rss_mib} MiB"
            )
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
