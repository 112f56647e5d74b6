import re

import pytest

from editloop.charts import Bars, Chart, Series, nice_ticks, render, render_bars


def test_it_draws_one_labelled_line_per_series():
    svg = render(
        Chart(
            "Loss",
            "step",
            "loss",
            [Series("train", [(0, 2.0), (1, 1.5), (2, 1.0)]), Series("val", [(0, 1.8), (2, 1.2)])],
        )
    )

    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2
    assert ">train</text>" in svg and ">val</text>" in svg


def test_it_escapes_labels():
    svg = render(Chart("<b>x</b>", "step", "loss", [Series("<script>", [(0, 1.0), (1, 2.0)])]))

    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_it_says_so_when_there_is_nothing_to_plot():
    svg = render(Chart("Loss", "step", "loss", [Series("train", [])]))

    assert "no data yet" in svg


def test_it_skips_missing_and_infinite_points():
    svg = render(Chart("Loss", "step", "loss", [Series("train", [(0, 1.0), (1, float("nan"))])]))

    assert svg.count("<circle") == 1


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3, 97) == [20, 40, 60, 80]


def test_counted_x_values_get_whole_ticks_only():
    svg = render(Chart("Versions", "version", "accuracy", [Series("test", [(1, 0.5), (2, 0.6)])]))

    assert ">1.5</text>" not in svg and ">1</text>" in svg


def test_bars_escape_labels_skip_missing_values_and_scale_to_the_largest():
    svg = render_bars(Bars("Judgements", "count", [("<b>ann</b>", 4), ("bob", None), ("cy", 2)]))

    assert "&lt;b&gt;ann&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count("<rect") == 2  # bob has no value
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="\d+" width="([\d.]+)"', svg)]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert "no data yet" in render_bars(Bars("Empty", "count", [("a", None)]))
