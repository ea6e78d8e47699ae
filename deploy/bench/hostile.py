"""Hostile-input benchmark (issue 12): peak RSS and time of `geobatch-worker analyze` on
adversarial GeoJSON next to a plain file of about the same size.

Inputs (generated into a temporary directory, about SIZE_MB each):
  plain             polygons of 64 vertices, the baseline
  property_names    one feature with hundreds of thousands of distinct property names
  touching_holes    one polygon whose big hole is touched at every vertex by a tiny hole
  deep_nesting      features whose properties nest arrays 60 deep (the default limit is 64)
  long_strings      features with one multi-megabyte string property each

Prints a Markdown table (paste it into docs/benchmarks.md) and the load average. Peak RSS
is the child's own high-water mark (wait4's ru_maxrss), time is wall clock.

Usage: python3 deploy/bench/hostile.py [BINARY]   (default target/release/geobatch-worker)
Environment: SIZE_MB (default 40).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time

SIZE = int(os.environ.get("SIZE_MB", "40")) * 1_000_000


def write_collection(path, features):
    """Writes features (an iterator of JSON texts) until the file reaches SIZE bytes."""
    with open(path, "w") as out:
        out.write('{"type":"FeatureCollection","features":[')
        written = 0
        first = True
        for feature in features:
            if not first:
                out.write(",")
            first = False
            out.write(feature)
            written += len(feature) + 1
            if written >= SIZE:
                break
        out.write("]}")


def plain():
    n = 0
    while True:
        ring = [[round(10 + math.cos(2 * math.pi * k / 64), 6),
                 round(10 + math.sin(2 * math.pi * k / 64), 6)] for k in range(64)]
        ring.append(ring[0])
        yield json.dumps({"type": "Feature", "properties": {"n": n, "name": f"f{n}"},
                          "geometry": {"type": "Polygon", "coordinates": [ring]}},
                         separators=(",", ":"))
        n += 1


def property_names():
    names = []
    size = 0
    n = 0
    while size < SIZE:
        entry = f'"p{n}":{n}'
        names.append(entry)
        size += len(entry) + 1
        n += 1
    yield '{"type":"Feature","geometry":null,"properties":{' + ",".join(names) + "}}"


def touching_holes():
    # Shell: a big square. Hole 0: a regular polygon of V vertices around the centre. At
    # each of its vertices a tiny triangular hole, outside hole 0, touches it at that vertex.
    per_vertex = 130  # bytes of JSON per vertex of hole 0 with its tiny hole
    v = max(16, SIZE // per_vertex)
    r = 40.0
    big = []
    tiny = []
    for k in range(v):
        a = 2 * math.pi * k / v
        x, y = r * math.cos(a), r * math.sin(a)
        big.append([x, y])
        ox, oy = math.cos(a), math.sin(a)  # outward
        tx, ty = -oy, ox  # tangent
        e = 0.3 * 2 * math.pi * r / v
        p1 = [x + ox * e + tx * e * 0.3, y + oy * e + ty * e * 0.3]
        p2 = [x + ox * e - tx * e * 0.3, y + oy * e - ty * e * 0.3]
        tiny.append([[x, y], p1, p2, [x, y]])
    big.append(big[0])
    shell = [[-50, -50], [50, -50], [50, 50], [-50, 50], [-50, -50]]
    rings = [shell, big] + tiny
    yield json.dumps({"type": "Feature", "properties": {},
                      "geometry": {"type": "Polygon", "coordinates": rings}},
                     separators=(",", ":"))


def deep_nesting():
    value = "[" * 60 + "1" + "]" * 60
    n = 0
    while True:
        yield ('{"type":"Feature","properties":{"deep":' + value + ',"n":%d},' % n +
               '"geometry":{"type":"Point","coordinates":[1,2]}}')
        n += 1


def long_strings():
    text = "x" * 4_000_000
    n = 0
    while True:
        yield ('{"type":"Feature","properties":{"text":"' + text + '","n":%d},' % n +
               '"geometry":{"type":"Point","coordinates":[1,2]}}')
        n += 1


INPUTS = [
    ("plain", plain),
    ("property_names", property_names),
    ("touching_holes", touching_holes),
    ("deep_nesting", deep_nesting),
    ("long_strings", long_strings),
]


def run(binary, path):
    started = time.monotonic()
    child = subprocess.Popen([binary, "analyze", "--format", "json", path],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    try:
        report = json.loads(output)
    except ValueError:
        report = {}
    if "error" in report:
        outcome = "error " + report["error"]["kind"]
    elif report:
        outcome = "ok"
        if report.get("untracked_properties"):
            outcome += f", {report['untracked_properties']} names untracked"
        if report.get("unchecked_geometries"):
            outcome += f", {report['unchecked_geometries']} unchecked"
    else:
        outcome = f"exit {child.returncode}"
    return seconds, usage.ru_maxrss / 1024, outcome


def generate_in_child(name, path):
    """Generates one input in a separate process: Linux carries a process's peak RSS
    across exec, so the analysis must be started from a parent that stayed small."""
    subprocess.run([sys.executable, __file__, "--generate", name, path], check=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--generate":
        write_collection(sys.argv[3], dict(INPUTS)[sys.argv[2]]())
        return
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/geobatch-worker"
    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    print("| input | bytes | outcome | seconds | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name, _ in INPUTS:
            path = os.path.join(scratch, name + ".geojson")
            generate_in_child(name, path)
            seconds, rss_mb, outcome = run(binary, path)
            print(f"| {name} | {os.path.getsize(path)} | {outcome} | {seconds:.2f} | {rss_mb:.0f} |",
                  flush=True)
            os.remove(path)
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])
    print(f"\nbinary {binary}; load average before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
