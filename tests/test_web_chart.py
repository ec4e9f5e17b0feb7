"""The dashboard's pure parts: timeline layout and word highlighting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from monitor import highlight
from monitor.web.chart import OTHER, build_chart, choose_bucket

BERLIN = ZoneInfo("Europe/Berlin")


def test_day_buckets_follow_berlin_midnight_across_the_dst_change() -> None:
    # 25 Oct 2025 22:30 UTC is already 26 Oct in Berlin (the day with 25 hours).
    rows = [
        (datetime(2025, 10, 25, 21, tzinfo=UTC), "a", 2),  # 23:00 Berlin, 25 Oct
        (datetime(2025, 10, 25, 22, tzinfo=UTC), "a", 3),  # 00:00 Berlin, 26 Oct (CEST)
        (datetime(2025, 10, 26, 22, tzinfo=UTC), "b", 1),  # 23:00 Berlin, 26 Oct (CET)
        (datetime(2025, 10, 27, 23, tzinfo=UTC), "b", 4),  # 00:00 Berlin, 28 Oct
    ]
    chart = build_chart(rows, [], "day", BERLIN)
    assert chart.total == 10
    assert [t.label for t in chart.x_ticks] == ["25.10.", "26.10.", "27.10.", "28.10."]
    per_slot: dict[float, int] = {}
    for bar in chart.bars:
        count = int(bar.label.rsplit(": ", 1)[1])
        per_slot[bar.x] = per_slot.get(bar.x, 0) + count
    assert list(per_slot.values()) == [2, 4, 4]  # 27 Oct is an empty slot
    assert chart.peak == 4


def test_bars_stack_per_outlet_and_markers_are_numbered_in_time_order() -> None:
    t0 = datetime(2025, 10, 16, 6, tzinfo=UTC)
    rows = [(t0, f"outlet{i}", 1) for i in range(12)] + [(t0 + timedelta(hours=2), "outlet0", 5)]
    devs = [(7, "erste", t0 + timedelta(minutes=30)), (9, "zweite", t0 + timedelta(hours=2, minutes=5))]
    chart = build_chart(rows, devs, "hour", BERLIN)
    assert [m.number for m in chart.markers] == [1, 2]
    assert [m.development_id for m in chart.markers] == [7, 9]
    assert chart.markers[0].x < chart.markers[1].x
    assert len(chart.legend) == 10 and chart.legend[-1].name == OTHER and chart.legend[-1].count == 3
    assert chart.legend[0].name == "outlet0" and chart.legend[0].count == 6
    first_slot = [b for b in chart.bars if b.x == chart.bars[0].x]
    assert (
        abs(
            sum(b.height for b in first_slot) - (chart.plot_bottom - chart.plot_top) * 12 / chart_y_max(chart)
        )
        < 0.1
    )
    assert choose_bucket(t0, t0 + timedelta(days=3)) == "hour"
    assert choose_bucket(t0, t0 + timedelta(days=5)) == "day"
    assert build_chart([], [], "hour", BERLIN).empty


def test_a_story_longer_than_the_chart_shows_its_newest_buckets_in_time_order() -> None:
    """One archive article years older than the rest (or 20 days in hours) spans more buckets than
    the chart has: the newest ones are shown, each at its own place; what lies before is counted.
    (Was: every bucket past the cap drawn at the first slot, on top of each other.)"""
    t0 = datetime(2025, 10, 16, 6, tzinfo=UTC)
    recent = [(t0 + timedelta(days=d), "a", d + 1) for d in range(20)]
    archive = [(datetime(2019, 3, 1, 10, tzinfo=UTC), "b", 7)]
    devs = [(1, "alt", datetime(2019, 3, 1, 11, tzinfo=UTC)), (2, "neu", t0 + timedelta(days=19))]
    chart = build_chart(recent + archive, devs, "day", BERLIN)
    xs = sorted({b.x for b in chart.bars})
    assert len(xs) == 20  # 20 days, 20 places
    counts = [int(b.label.rsplit(": ", 1)[1]) for b in sorted(chart.bars, key=lambda b: b.x)]
    assert counts == list(range(1, 21))  # the newest bucket at the right, in time order
    assert chart.hidden == 7 and chart.total == sum(range(1, 21))
    assert [m.development_id for m in chart.markers] == [2] and chart.markers[0].x > xs[-1]
    hourly = build_chart(recent, [], "hour", BERLIN)  # 19 days in hours: more than 400
    hour_xs = [b.x for b in sorted(hourly.bars, key=lambda b: b.x)]
    assert len(set(hour_xs)) == len(hour_xs) and hourly.hidden == sum(range(1, 4))


def chart_y_max(chart) -> int:  # type: ignore[no-untyped-def]
    return int(max(chart.y_ticks, key=lambda t: int(t.label)).label)


def test_highlight_marks_words_missing_from_the_baseline(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    baseline = "Trump und Putin wollen sich in Budapest treffen. Der Gipfel soll bald stattfinden."
    sentence = "Der Budapest-Gipfel wurde abgesagt, sagte Peskow."
    for use_diff in (True, False):
        if not use_diff:  # the fallback when the diff stage cannot judge words
            monkeypatch.setattr(highlight, "_diff_novel_words", lambda *_: None)
        segments = highlight.highlight_segments(sentence, baseline)
        assert "".join(s.text for s in segments) == sentence
        marked = {s.text for s in segments if s.new}
        assert any("abgesagt" in m for m in marked), (use_diff, marked)
        assert any("Peskow" in m for m in marked), (use_diff, marked)
        assert not any("Budapest" in m or m == "Der" for m in marked), (use_diff, marked)
    assert highlight.highlight_segments(sentence, "") == [highlight.Segment(sentence, False)]
