#!/usr/bin/env bash
# Scaling benchmark: runs every built-in scenario through every policy over several seeds
# with the release build of `geobatch-controller simulate`, and records in docs/scaling.md
# (between the bench markers) the worst case over the seeds and the per-seed figures of
# p95 latency, cost, idle share, cost / offline lower bound and interrupted tasks, with the
# issue's targets checked on every seed. Refreshes the README plot (docs/img/, seed 1).
# The figures are simulated time, so machine load does not change them; only the wall time
# at the end does.
# Besides the built-ins it runs the example workload files a user might bring
# (controller/examples/workloads/*.csv, made by generate.py there from documented rules).
# Usage: bash controller/bench/scaling.sh   (SEEDS="1 2 3" to change the seeds; PROFILE=dev
# for the debug build, same results, slower; EXTRA=",uploads.csv" to add workload files,
# WORKLOADS="" to leave the examples out)
set -euo pipefail
cd "$(dirname "$0")/../.."

seeds="${SEEDS:-1 2 3 4 5}"
profile="${PROFILE:-release}"
workloads="${WORKLOADS-controller/examples/workloads/field-survey.csv,controller/examples/workloads/nightly-export.csv}"
extra="${workloads:+,$workloads}${EXTRA:-}"
out="out/scaling"
case "$profile" in
  release) bin="target/release/geobatch-controller" ;;
  dev) bin="target/debug/geobatch-controller" ;;
  *) echo "PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

cargo build --profile "$profile" -p geobatch-controller
rm -rf "$out"
mkdir -p "$out"
started=$(date +%s%N)
for seed in $seeds; do
  "$bin" simulate --scenario "all$extra" --policy all --seed "$seed" --out "$out/seed-$seed" \
    >/dev/null 2>"$out/seed-$seed.timings.txt"
done
finished=$(date +%s%N)
total_ms=$(( (finished - started) / 1000000 ))
first_seed="${seeds%% *}"
cp "$out/seed-$first_seed/mixed.svg" docs/img/scaling-mixed.svg

python3 - "$out" "$total_ms" "$profile" "$extra" $seeds <<'PY'
import datetime, json, os, pathlib, re, subprocess, sys

out, total_ms, profile, extra, *seeds = sys.argv[1:]
runs = {}
for seed in seeds:
    summary = json.loads(pathlib.Path(out, f"seed-{seed}", "summary.json").read_text())
    for row in summary["rows"]:
        runs.setdefault((row["scenario"], row["policy"]), {})[seed] = row
scenarios = list(dict.fromkeys(s for s, _ in runs))
policies = list(dict.fromkeys(p for _, p in runs))

def table(header, lines):
    text = "| " + " | ".join(header) + " |\n|" + "---|" * 2 + "---:|" * (len(header) - 2) + "\n"
    return text + "".join("| " + " | ".join(line) + " |\n" for line in lines)

worst = []
for scenario in scenarios:
    for policy in policies:
        rows = list(runs[(scenario, policy)].values())
        worst.append([
            scenario, policy,
            f"{max(r['latency_p95_secs'] for r in rows):.0f}",
            f"{max(r['cost_usd'] for r in rows):.2f}",
            f"{100 * max(r['idle_share'] for r in rows):.0f}",
            f"{max(r['cost_vs_lower_bound'] for r in rows):.2f}",
            f"{sum(r['interrupted_tasks'] for r in rows)}",
            f"{sum(r['dead_lettered'] for r in rows)}",
        ])
per_seed = []
for scenario in scenarios:
    for policy in policies:
        for seed in seeds:
            r = runs[(scenario, policy)][seed]
            per_seed.append([
                scenario, policy, seed,
                f"{r['latency_p95_secs']:.0f}", f"{r['cost_usd']:.2f}",
                f"{100 * r['idle_share']:.0f}", f"{r['cost_vs_lower_bound']:.2f}",
                f"{r['interrupted_tasks']}", f"{r['lower_bound_usd']:.2f}",
                f"{r['lower_bound_p95_secs']:.0f}", f"{r['p95_floor_secs']:.0f}",
            ])
# The issue's targets, seed by seed: geobatch's p95 and cost at most KEDA's, no baseline
# better on both, no interrupted task.
targets = []
for scenario in scenarios:
    met = {"p95 <= keda": 0, "cost <= keda": 0, "no baseline better on both": 0,
           "0 interrupted": 0}
    for seed in seeds:
        gb = runs[(scenario, "geobatch")][seed]
        others = [runs[(scenario, p)][seed] for p in policies if p != "geobatch"]
        keda = runs.get((scenario, "keda"), {}).get(seed)
        if keda and gb["latency_p95_secs"] <= keda["latency_p95_secs"] + 1e-9:
            met["p95 <= keda"] += 1
        if keda and gb["cost_usd"] <= keda["cost_usd"] + 1e-9:
            met["cost <= keda"] += 1
        if not any(o["latency_p95_secs"] < gb["latency_p95_secs"] - 1e-9
                   and o["cost_usd"] < gb["cost_usd"] - 1e-9 for o in others):
            met["no baseline better on both"] += 1
        if gb["interrupted_tasks"] == 0:
            met["0 interrupted"] += 1
    targets.append([scenario, "geobatch"] + [f"{n}/{len(seeds)}" for n in met.values()])

cpu = "unknown CPU"
try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
load = os.getloadavg()[0]
seed_list = ", ".join(seeds)
command = f"geobatch-controller simulate --scenario all{extra} --policy all --seed N --out out/scaling/seed-N"
block = f"""<!-- bench:begin (written by controller/bench/scaling.sh; do not edit by hand) -->
Recorded {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {"release" if profile == "release" else "debug"} build, seeds {seed_list}, with
`make bench-scaling`, which runs, for each seed N,

```sh
{command}
```

Worst case over the seeds (p95, cost, idle share and cost / lower bound: the highest of any
seed; interrupted tasks and DLQ: the sum over the seeds):

{table(["scenario", "policy", "p95 s", "cost USD", "idle %", "cost / lower bound", "interrupted", "DLQ"], worst)}
The issue's targets, seeds met of {len(seeds)}:

{table(["scenario", "policy", "p95 <= keda", "cost <= keda", "no baseline better on both", "0 interrupted"], targets)}
<details><summary>Per seed (with the offline lower bound, its p95 and the p95 floor)</summary>

{table(["scenario", "policy", "seed", "p95 s", "cost USD", "idle %", "cost / lower bound", "interrupted", "lower bound USD", "lower bound p95 s", "p95 floor s"], per_seed)}
</details>

Wall time of all {len(seeds)} commands: {total_ms} ms on {nproc} cores ({cpu}), load average {load:.1f}
(simulated figures do not depend on it).
<!-- bench:end -->"""
doc = pathlib.Path("docs/scaling.md")
text = doc.read_text()
new, n = re.subn(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _: block, text, flags=re.S)
if n != 1:
    sys.exit("docs/scaling.md: expected exactly one bench:begin/bench:end block")
doc.write_text(new)
pathlib.Path(out, "bench.md").write_text(block + "\n")
print(f"docs/scaling.md updated; the block is also in {out}/bench.md ({total_ms} ms for all runs)")
PY
