#!/usr/bin/env python3
"""Writes a synthetic GeoJSON FeatureCollection of simple polygons for benchmarks.

Deterministic (fixed seed): the same arguments give the same bytes. Each feature is a
star-shaped, hence valid, polygon of about --vertices positions with seven decimals, small
enough (0.005 to 0.1 degrees) to look like parcels or buildings, scattered over the globe,
with a handful of typed properties. Generated at benchmark time; never committed.
"""

import argparse
import math
import random
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="file to write")
    parser.add_argument("--megabytes", type=float, default=320.0, help="stop once the file reaches this size (default 320)")
    parser.add_argument("--vertices", type=int, default=50, help="mean positions per polygon (default 50)")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    target = int(args.megabytes * 1_000_000)
    written = 0
    index = 0
    categories = ["residential", "commercial", "industrial", "park", "water", "farmland"]
    with open(args.output, "w", encoding="ascii", newline="\n") as out:
        head = '{"type":"FeatureCollection","name":"synthetic_polygons","features":[\n'
        out.write(head)
        written += len(head)
        while written < target:
            n = max(4, int(rng.gauss(args.vertices, args.vertices / 5)))
            lon = rng.uniform(-179.0, 179.0)
            lat = rng.uniform(-80.0, 80.0)
            radius = rng.uniform(0.005, 0.1)
            positions = []
            for i in range(n):
                angle = 2 * math.pi * i / n
                r = radius * rng.uniform(0.6, 1.0)
                positions.append(f"[{lon + r * math.cos(angle):.7f},{lat + r * math.sin(angle):.7f}]")
            positions.append(positions[0])
            props = (
                f'{{"id":{index},"name":"parcel {index}","category":"{rng.choice(categories)}",'
                f'"value":{rng.uniform(0, 1e6):.2f},"surveyed":{"true" if rng.random() < 0.5 else "false"}}}'
            )
            feature = (
                ("," if index else "")
                + f'{{"type":"Feature","properties":{props},"geometry":{{"type":"Polygon","coordinates":[['
                + ",".join(positions)
                + "]]}}\n"
            )
            out.write(feature)
            written += len(feature)
            index += 1
        out.write("]}\n")
    print(f"{args.output}: {index} polygons, {written / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
