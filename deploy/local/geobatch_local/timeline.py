"""The scaling timeline: what the queue, the tasks and the instances did, second by second.

`Sampler` polls the emulator (queue attributes, service, Auto Scaling Group) and the agent
stand-in (running and protected tasks) once a second. `render_svg` and `table` turn the
samples into the plot file and the short table the demo prints. Rendering is pure.
"""

from __future__ import annotations

import csv
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Sample:
    """One look at the pipeline."""

    secs: float
    visible: int
    in_flight: int
    desired_tasks: int
    running_tasks: int
    protected_tasks: int
    desired_instances: int
    instances: int


class Sampler:
    """Collects a `Sample` every `interval_secs` on a background thread."""

    def __init__(self, look: Callable[[], Sample | None], interval_secs: float = 1.0) -> None:
        self._look = look
        self._interval = interval_secs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeline", daemon=True)
        self.samples: list[Sample] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sample = self._look()
            except Exception:  # noqa: BLE001 - a missed sample is a gap in the plot, not a failure
                sample = None
            if sample is not None:
                self.samples.append(sample)
            self._stop.wait(self._interval)


def write_csv(samples: list[Sample], path: Path) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(Sample)])
        writer.writeheader()
        for sample in samples:
            writer.writerow(asdict(sample))


def table(samples: list[Sample]) -> str:
    """One row per change of any count (time relative to the first sample)."""
    header = ("t (s)", "visible", "in flight", "tasks wanted", "tasks running", "protected", "instances wanted", "instances")
    rows: list[tuple[str, ...]] = []
    previous = None
    for sample in samples:
        values = (
            sample.visible,
            sample.in_flight,
            sample.desired_tasks,
            sample.running_tasks,
            sample.protected_tasks,
            sample.desired_instances,
            sample.instances,
        )
        if values != previous:
            rows.append((f"{sample.secs:.0f}", *map(str, values)))
            previous = values
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


_PANELS = (
    ("messages", (("visible", "#1f77b4"), ("in_flight", "#ff7f0e"))),
    ("tasks", (("desired_tasks", "#2ca02c"), ("running_tasks", "#d62728"), ("protected_tasks", "#9467bd"))),
    ("instances", (("desired_instances", "#8c564b"), ("instances", "#e377c2"))),
)


def render_svg(samples: list[Sample], title: str) -> str:
    """Three stacked step plots sharing the time axis: messages, tasks, instances."""
    width, panel_height, left, right, top, gap = 900, 150, 70, 190, 40, 40
    height = top + len(_PANELS) * (panel_height + gap) + 10
    end = max((s.secs for s in samples), default=1.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    plot_width = width - left - right
    for index, (label, series) in enumerate(_PANELS):
        y0 = top + index * (panel_height + gap)
        peak = max((getattr(s, name) for s in samples for name, _ in series), default=0)
        peak = max(peak, 1)

        def x(secs: float) -> float:
            return left + plot_width * secs / end

        def y(value: float) -> float:
            return y0 + panel_height - panel_height * value / peak

        parts.append(f'<rect x="{left}" y="{y0}" width="{plot_width}" height="{panel_height}" fill="none" stroke="#999"/>')
        parts.append(f'<text x="{left - 8}" y="{y0 + 12}" text-anchor="end">{peak}</text>')
        parts.append(f'<text x="{left - 8}" y="{y0 + panel_height}" text-anchor="end">0</text>')
        parts.append(
            f'<text x="14" y="{y0 + panel_height / 2}" transform="rotate(-90 14 {y0 + panel_height / 2})" '
            f'text-anchor="middle">{label}</text>'
        )
        for offset, (name, colour) in enumerate(series):
            points: list[str] = []
            for i, sample in enumerate(samples):
                value = getattr(sample, name)
                if i:
                    points.append(f"{x(sample.secs):.1f},{y(getattr(samples[i - 1], name)):.1f}")
                points.append(f"{x(sample.secs):.1f},{y(value):.1f}")
            # Wanted sizes dashed, so they stay visible where the actual sizes match them.
            dash = ' stroke-dasharray="6 4"' if name.startswith("desired") else ""
            if points:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{" ".join(points)}"/>')
            legend_y = y0 + 16 + offset * 18
            parts.append(f'<line x1="{width - right + 12}" y1="{legend_y - 4}" x2="{width - right + 32}" y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"{dash}/>')
            parts.append(f'<text x="{width - right + 38}" y="{legend_y}">{name.replace("_", " ")}</text>')
        axis_y = y0 + panel_height + 14
        for tick in range(0, 6):
            secs = end * tick / 5
            parts.append(f'<text x="{x(secs):.1f}" y="{axis_y}" text-anchor="middle">{secs:.0f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

