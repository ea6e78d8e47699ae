"""Regenerates the demo's sample files from the project's shared real data.

    python3 deploy/samples/make_samples.py ../shared/data/real deploy/samples/files

Only public-domain sources are used (Natural Earth, USGS); see deploy/samples/README.md.
The output is deterministic: same inputs, same bytes.
"""

import json
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path


def write(path: Path, collection: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def main(source: Path, target: Path) -> None:
    cities = json.loads((source / "ne_cities.geojson").read_text())
    write(target / "cities/ne_populated_places.geojson", {"type": "FeatureCollection", "features": cities["features"]})

    quakes = json.loads((source / "usgs_earthquakes.geojson").read_text())
    by_day = defaultdict(list)
    for feature in quakes["features"]:
        day = datetime.fromtimestamp(feature["properties"]["time"] / 1000, tz=timezone.utc).date().isoformat()
        by_day[day].append(feature)
    for day, features in sorted(by_day.items()):
        write(target / f"earthquakes/usgs {day}.geojson", {"type": "FeatureCollection", "features": features})

    countries = json.loads((source / "ne_50m_countries.geojson").read_text())
    # Africa and Europe, roughly: a bounded subset keeps the samples to a few MB.
    band = []
    for feature in countries["features"]:
        ring = feature["geometry"]["coordinates"][0]
        if feature["geometry"]["type"] == "MultiPolygon":
            ring = ring[0]
        lon = sum(p[0] for p in ring) / len(ring)
        lat = sum(p[1] for p in ring) / len(ring)
        if -20 <= lon < 45 and -40 <= lat < 72:
            band.append(feature)
    band.sort(key=lambda f: f["properties"]["name"])
    half = len(band) // 2
    write(target / "countries/africa+europe part 1.geojson", {"type": "FeatureCollection", "features": band[:half]})
    write(target / "countries/africa+europe part 2.geojson", {"type": "FeatureCollection", "features": band[half:]})
    ivory = [f for f in countries["features"] if f["properties"]["name"].startswith("C") and "Ivoire" in f["properties"]["name"]]
    write(target / "countries/Côte d'Ivoire.geojson", {"type": "FeatureCollection", "features": ivory})

    # A deliberately broken upload, to show the error report a user gets.
    broken = target / "broken/truncated upload.geojson"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[1.0,', encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
