"""The story timeline as an SVG chart, laid out here and drawn by a template. Pure.

Stacked bars: matched items per hour or day, one colour per outlet (the busiest nine get their own
colour, the rest share grey); developments are vertical markers numbered like the list below the
chart. Everything is computed server-side, so the page needs no JavaScript.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

PALETTE = [
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#9a3412",
]
OTHER_COLOUR = "#9ca3af"
OTHER = "other outlets"

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 28, 40
MAX_BUCKETS = 400


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    number: int
    development_id: int
    label: str


@dataclass(frozen=True, slots=True)
class LegendEntry:
    name: str
    colour: str
    count: int


@dataclass(slots=True)
class Chart:
    bucket: str
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: float = LEFT
    plot_right: float = WIDTH - RIGHT
    plot_top: float = TOP
    plot_bottom: float = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    legend: list[LegendEntry] = field(default_factory=list)
    total: int = 0
    peak: int = 0
    peak_label: str = ""
    hidden: int = 0  # matched items before the chart's first bucket (more than MAX_BUCKETS back)

    @property
    def empty(self) -> bool:
        return self.total == 0 and not self.markers


def choose_bucket(first: datetime | None, last: datetime | None) -> str:
    """Hours while the story is young (up to four days), days after that."""
    if first is None or last is None:
        return "hour"
    return "hour" if (last - first) <= timedelta(days=4) else "day"


def _floor(ts: datetime, bucket: str, zone: tzinfo) -> datetime:
    local = ts.astimezone(zone)
    if bucket == "day":
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        local = local.replace(minute=0, second=0, microsecond=0)
    return local.astimezone(UTC)


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if peak / step <= 5:
            return step
    return max(1, peak // 5)


def build_chart(
    rows: Sequence[tuple[datetime, str, int]],
    developments: Sequence[tuple[int, str, datetime]],
    bucket: str,
    zone: tzinfo,
) -> Chart:
    """``rows``: (bucket start UTC, outlet, count) from ``Store.timeline`` (UTC hours or days);
    ``developments``: (id, title, first seen) oldest first. Buckets are re-aligned to local time."""
    chart = Chart(bucket=bucket)
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    counts: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_outlet: dict[str, int] = defaultdict(int)
    for start, outlet, count in rows:
        counts[_floor(start, bucket, zone)][outlet] += count
        per_outlet[outlet] += count
    times = list(counts) + [_floor(ts, bucket, zone) for _, _, ts in developments]
    if not times:
        return chart
    first, last = min(times), max(times)
    # The newest MAX_BUCKETS buckets, back from the last (a story spanning more, e.g. with one archive
    # article from years ago, shows its recent part; what lies before is counted in ``hidden``).
    # Days step back 22 hours before flooring: a day is 23 to 25 hours long around the DST changes.
    back = step - timedelta(hours=2 if bucket == "day" else 0)
    starts: list[datetime] = [last]
    while starts[-1] > first and len(starts) < MAX_BUCKETS:
        starts.append(_floor(starts[-1] - back, bucket, zone))
    starts.reverse()
    index = {s: i for i, s in enumerate(starts)}
    window_start = starts[0]
    chart.hidden = sum(sum(v.values()) for s, v in counts.items() if s < window_start)
    counts = defaultdict(lambda: defaultdict(int), {s: v for s, v in counts.items() if s >= window_start})
    developments = [d for d in developments if _floor(d[2], bucket, zone) >= window_start]

    ranked = sorted(per_outlet.items(), key=lambda kv: (-kv[1], kv[0]))
    colours = {name: PALETTE[i] for i, (name, _) in enumerate(ranked[: len(PALETTE)])}
    other_count = sum(c for name, c in ranked[len(PALETTE) :])
    chart.legend = [LegendEntry(name, colours[name], c) for name, c in ranked[: len(PALETTE)]]
    if other_count:
        chart.legend.append(LegendEntry(OTHER, OTHER_COLOUR, other_count))

    totals = {s: sum(v.values()) for s, v in counts.items()}
    chart.total = sum(totals.values())
    chart.peak = max(totals.values(), default=0)
    y_step = _nice_step(max(chart.peak, 1))
    y_max = max(y_step, -(-max(chart.peak, 1) // y_step) * y_step)
    plot_w = chart.plot_right - chart.plot_left
    plot_h = chart.plot_bottom - chart.plot_top
    slot = plot_w / len(starts)
    bar_w = max(1.0, slot * 0.8)
    fmt = "%d.%m. %H:%M" if bucket == "hour" else "%a %d.%m."

    def x_of(ts: datetime) -> float | None:
        at = index.get(_floor(ts, bucket, zone))
        return None if at is None else chart.plot_left + at * slot

    for start, by_outlet in sorted(counts.items()):
        left = x_of(start)
        if left is None:  # not a bucket of the window (cannot happen: every bucket is stepped to)
            continue
        x = left + (slot - bar_w) / 2
        y = chart.plot_bottom
        stacks: list[tuple[str, str, int]] = []
        other = 0
        for name, c in sorted(by_outlet.items(), key=lambda kv: (-per_outlet[kv[0]], kv[0])):
            if name in colours:
                stacks.append((name, colours[name], c))
            else:
                other += c
        if other:
            stacks.append((OTHER, OTHER_COLOUR, other))
        when = start.astimezone(zone).strftime(fmt)
        for name, colour, c in stacks:
            h = plot_h * c / y_max
            y -= h
            chart.bars.append(
                Bar(round(x, 2), round(y, 2), round(bar_w, 2), round(h, 2), colour, f"{when} – {name}: {c}")
            )
        if totals[start] == chart.peak and not chart.peak_label:
            chart.peak_label = when

    for value in range(0, y_max + 1, y_step):
        chart.y_ticks.append(Tick(round(chart.plot_bottom - plot_h * value / y_max, 2), str(value)))
    label_every = max(1, round(len(starts) / 8))
    for i, start in enumerate(starts):
        if i % label_every == 0:
            local = start.astimezone(zone)
            label = local.strftime("%d.%m. %H:00") if bucket == "hour" else local.strftime("%d.%m.")
            chart.x_ticks.append(Tick(round(chart.plot_left + i * slot + slot / 2, 2), label))
    for number, (dev_id, title, ts) in enumerate(developments, start=1):
        left = x_of(ts)
        if left is None:
            continue
        x = left + slot / 2
        chart.markers.append(
            Marker(
                round(x, 2),
                number,
                dev_id,
                f"#{number} {ts.astimezone(zone).strftime('%d.%m. %H:%M')}: {title}",
            )
        )
    return chart
