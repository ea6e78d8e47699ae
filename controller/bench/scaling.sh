#!/usr/bin/env bash
# Scaling benchmark: runs every built-in scenario through every policy with the release
# build of `geobatch-controller simulate`, records the summary, the targets and the run
# times in docs/scaling.md (between the bench markers), and refreshes the README plot in
# docs/img/. Usage: bash controller/bench/scaling.sh   (SEED=N to change the seed;
# PROFILE=dev to use the debug build, which gives the same results, only slower)
set -euo pipefail
cd "$(dirname "$0")/../.."

seed="${SEED:-1}"
profile="${PROFILE:-release}"
out="out/scaling"
case "$profile" in
  release) bin="target/release/geobatch-controller" ;;
  dev) bin="target/debug/geobatch-controller" ;;
  *) echo "PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

cargo build --profile "$profile" -p geobatch-controller
rm -rf "$out"
mkdir -p "$out"
command=(simulate --scenario all --policy all --seed "$seed" --out "$out")
started=$(date +%s%N)
"$bin" "${command[@]}" >/dev/null 2>"$out/timings.txt"
finished=$(date +%s%N)
total_ms=$(( (finished - started) / 1000000 ))

cp "$out/mixed.svg" docs/img/scaling-mixed.svg
cp "$out/mixed.png" docs/img/scaling-mixed.png

python3 - "$out" "$seed" "$total_ms" "geobatch-controller ${command[*]}" "$profile" <<'PY'
import pathlib, re, subprocess, sys, datetime
out, seed, total_ms, command, profile = sys.argv[1:6]
summary = pathlib.Path(out, "summary.md").read_text().split("\n", 2)[2].strip()
summary = summary.replace("## Targets", "#### Targets")
timings = pathlib.Path(out, "timings.txt").read_text().strip()
cpu = "unknown CPU"
try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
block = f"""<!-- bench:begin (written by controller/bench/scaling.sh; do not edit by hand) -->
Recorded {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {nproc} cores ({cpu}), {"release" if profile == "release" else "debug"} build,
seed {seed}, with

```sh
{command}
```

{summary}

Wall time of the whole command (16 runs, plots and summaries): {total_ms} ms. Per run:

```
{timings}
```
<!-- bench:end -->"""
doc = pathlib.Path("docs/scaling.md")
text = doc.read_text()
new, n = re.subn(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _: block, text, flags=re.S)
if n != 1:
    sys.exit("docs/scaling.md: expected exactly one bench:begin/bench:end block")
doc.write_text(new)
print(f"docs/scaling.md updated ({total_ms} ms for all runs)")
PY
