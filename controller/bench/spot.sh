#!/usr/bin/env bash
# Spot and warm-pool benchmark: every built-in scenario through every policy over several
# seeds, in four worlds that differ only in how the group buys instances:
#   on-demand  the world of every earlier result (today's geobatch cost is measured here);
#   spot       the stack's default mix (Spot above an On-Demand base of 0) with the Spot
#              Instance Advisor's "<5 %" interruption band;
#   stress     the same mix with 0.2 interruptions per Spot instance-hour (~2,800 times the
#              band), so interruptions happen in every scenario;
#   warm-pool  On-Demand with the stack's warm pool (AWS allows no warm pool with Spot).
# Records geobatch's figures (worst over the seeds) in docs/scaling.md between the
# bench-spot markers: p95 and cost in each world, cost as a share of the On-Demand cost,
# interruptions, work redone and files lost or dead-lettered. Every policy runs in the same
# world (the same instances meet the same interruptions), so the summaries in out/spot/ also
# hold the baselines' figures.
# Simulated time: machine load does not change the figures, only the wall time.
# Usage: bash controller/bench/spot.sh   (SEEDS="1 2 3", PROFILE=dev for the debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."

seeds="${SEEDS:-1 2 3 4 5}"
profile="${PROFILE:-release}"
out="out/spot"
case "$profile" in
  release) bin="target/release/geobatch-controller" ;;
  dev) bin="target/debug/geobatch-controller" ;;
  *) echo "PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

cargo build --profile "$profile" -p geobatch-controller
rm -rf "$out"
mkdir -p "$out"
printf '[model]\nspot_interruptions_per_hour = 0.2\n' > "$out/stress.toml"
started=$(date +%s%N)
for seed in $seeds; do
  for world in on-demand spot stress warm-pool; do
    case "$world" in
      stress) args=(--capacity spot --model "$out/stress.toml") ;;
      *) args=(--capacity "$world") ;;
    esac
    "$bin" simulate --scenario all --policy all --seed "$seed" "${args[@]}" \
      --out "$out/$world/seed-$seed" >/dev/null 2>"$out/$world-seed-$seed.log"
  done
done
finished=$(date +%s%N)
total_ms=$(( (finished - started) / 1000000 ))

python3 - "$out" "$total_ms" "$profile" $seeds <<'PY'
import datetime, json, os, pathlib, re, sys

out, total_ms, profile, *seeds = sys.argv[1:]
worlds = ["on-demand", "spot", "stress", "warm-pool"]
rows = {}
for world in worlds:
    for seed in seeds:
        summary = json.loads(pathlib.Path(out, world, f"seed-{seed}", "summary.json").read_text())
        for row in summary["rows"]:
            if row["policy"] == "geobatch":
                rows[(world, row["scenario"], seed)] = row
scenarios = list(dict.fromkeys(s for (_, s, _) in rows))

def table(header, lines):
    text = "| " + " | ".join(header) + " |\n|---|" + "---:|" * (len(header) - 1) + "\n"
    return text + "".join("| " + " | ".join(line) + " |\n" for line in lines)

lines, met = [], []
for scenario in scenarios:
    line = [scenario]
    counts = {"spot cost <= 50 %": 0, "spot p95 <= on-demand": 0,
              "stress p95 <= on-demand": 0, "0 lost or DLQ": 0}
    for world in worlds:
        per_seed = [rows[(world, scenario, seed)] for seed in seeds]
        p95 = max(r["latency_p95_secs"] for r in per_seed)
        cost = max(r["cost_usd"] for r in per_seed)
        if world == "on-demand":
            line += [f"{p95:.0f}", f"{cost:.2f}"]
            continue
        share = max(r["cost_usd"] / rows[("on-demand", scenario, s)]["cost_usd"]
                    for s, r in zip(seeds, per_seed))
        line += [f"{p95:.0f}", f"{cost:.2f} ({100 * share:.0f} %)"]
        if world == "stress":
            line += [
                f"{sum(r['spot_interruptions'] for r in per_seed)}",
                f"{sum(r['spot_work_redone_secs'] for r in per_seed):.0f}",
                f"{sum(r['files_lost'] + r['dead_lettered'] for r in per_seed)}",
            ]
    for seed in seeds:
        base = rows[("on-demand", scenario, seed)]
        spot = rows[("spot", scenario, seed)]
        stress = rows[("stress", scenario, seed)]
        counts["spot cost <= 50 %"] += spot["cost_usd"] <= 0.5 * base["cost_usd"] + 1e-9
        counts["spot p95 <= on-demand"] += spot["latency_p95_secs"] <= base["latency_p95_secs"] + 1e-9
        counts["stress p95 <= on-demand"] += stress["latency_p95_secs"] <= base["latency_p95_secs"] + 1e-9
        counts["0 lost or DLQ"] += all(
            rows[(w, scenario, seed)]["files_lost"] + rows[(w, scenario, seed)]["dead_lettered"] == 0
            for w in worlds)
    lines.append(line)
    met.append([scenario] + [f"{n}/{len(seeds)}" for n in counts.values()])

load = os.getloadavg()[0]
seed_list = ", ".join(seeds)
block = f"""<!-- bench-spot:begin (written by controller/bench/spot.sh; do not edit by hand) -->
Recorded {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {"release" if profile == "release" else "debug"} build, seeds {seed_list}, with
`make bench-spot`, which runs, for each seed N and each world,

```sh
geobatch-controller simulate --scenario all --policy all --seed N --capacity on-demand|spot|warm-pool --out ...
geobatch-controller simulate --scenario all --policy all --seed N --capacity spot --model stress.toml --out ...  # spot_interruptions_per_hour = 0.2
```

geobatch, worst case over the seeds (p95 and cost: the highest of any seed; the share: the
highest of cost / the same seed's On-Demand cost; interruptions, work redone and lost + DLQ:
the sum over the seeds):

{table(["scenario", "on-demand p95 s", "on-demand USD", "spot p95 s", "spot USD (share)", "stress p95 s", "stress USD (share)", "stress interruptions", "stress work redone file-s", "stress lost + DLQ", "warm-pool p95 s", "warm-pool USD (share)"], lines)}
Targets, seeds met of {len(seeds)} (lost or DLQ: in every world):

{table(["scenario", "spot cost <= 50 % of on-demand", "spot p95 <= on-demand", "stress p95 <= on-demand", "0 lost or DLQ"], met)}
Wall time of all runs: {total_ms} ms, load average {load:.1f} (simulated figures do not depend on it).
<!-- bench-spot:end -->"""
doc = pathlib.Path("docs/scaling.md")
text = doc.read_text()
new, n = re.subn(r"<!-- bench-spot:begin.*?<!-- bench-spot:end -->", lambda _: block, text, flags=re.S)
if n != 1:
    sys.exit("docs/scaling.md: expected exactly one bench-spot:begin/bench-spot:end block")
doc.write_text(new)
pathlib.Path(out, "bench.md").write_text(block + "\n")
print(f"docs/scaling.md updated; the block is also in {out}/bench.md ({total_ms} ms for all runs)")
PY
