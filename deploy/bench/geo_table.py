"""The `make bench-geo` table: criterion's medians of the `geo_path` group, one row per file
and thread count, the hull worker's analysis and the bare hand-over next to the built-in
report, as Markdown for docs/benchmarks.md ("The geo path next to the built-in report").

Usage: python3 deploy/bench/geo_table.py target/criterion/geo_path
"""

import json
import os
import sys
from pathlib import Path

PATHS = ("built_in_report", "hull_worker", "features_only")


def medians(group: Path) -> dict:
    """{(file, path, threads): (median seconds, bytes)} from criterion's saved estimates."""
    found = {}
    for benchmark in group.glob("*/*/new/benchmark.json"):
        meta = json.loads(benchmark.read_text())
        estimates = json.loads((benchmark.parent / "estimates.json").read_text())
        file, path = meta["function_id"].split("/")
        threads = meta["value_str"]
        found[(file, path, threads)] = (
            estimates["median"]["point_estimate"] / 1e9,
            meta["throughput"]["Bytes"],
        )
    return found


def main() -> int:
    group = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion/geo_path")
    found = medians(group)
    if not found:
        print(f"no criterion results under {group}: run the bench first", file=sys.stderr)
        return 1
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"`make bench-geo` (criterion medians, 10 samples; load average 1/5/15 min after the run: {load})")
    print()
    print("| file | threads | built-in report | hull worker (`geo` hull + centroid) | hand-over only | hull / built-in |")
    print("|---|---:|---:|---:|---:|---:|")
    for file, threads in sorted({(file, threads) for file, _, threads in found}):
        cells = []
        for path in PATHS:
            seconds, size = found.get((file, path, threads), (None, None))
            cells.append(
                "—" if seconds is None
                else f"{seconds * 1e3:.1f} ms ({size / seconds / 2**20:.1f} MiB/s)"
            )
        built_in = found.get((file, "built_in_report", threads))
        hull = found.get((file, "hull_worker", threads))
        ratio = f"{hull[0] / built_in[0]:.2f}×" if built_in and hull else "—"
        print(f"| {file} | {threads.rstrip('t')} | {' | '.join(cells)} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
