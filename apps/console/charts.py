"""Charts drawn on the server as SVG, for the dashboard and the usage page.

Why SVG from the server rather than a vendored script: the CSP allows no inline script, the
picture is in the HTML that tests and screenshots get, nothing is vendored or kept up to date,
and a ``viewBox`` with ``preserveAspectRatio="none"`` stretches the bars to any width (375 px
to 1440 px) while the labels stay HTML text at their own size. Each bar carries a ``<title>``
(its value on hover), and every chart sits above a table of the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

VIEW_HEIGHT = 100
SLOT = 10  # viewBox units per column: a bar of 7 and a gap of 3
BAR = 7


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class of console.css giving its colour


@dataclass(frozen=True)
class Segment:
    y: str
    height: str
    css: str


@dataclass(frozen=True)
class Column:
    x: str
    label: str
    tooltip: str
    segments: list[Segment]


@dataclass(frozen=True)
class ColumnChart:
    columns: list[Column]
    series: list[Series]
    top: int  # the value at the top of the scale
    axis: list[str]  # the first, middle and last columns' labels
    summary: str  # what a screen reader hears

    @property
    def view_width(self) -> int:
        return max(1, len(self.columns)) * SLOT


def nice_top(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``: a scale people read."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def column_chart(points: Sequence[tuple[str, Sequence[int]]], *, series: Sequence[Series], title: str) -> ColumnChart:
    """Stacked columns, one per point (label, one value per series), bottom to top in series order."""
    top = nice_top(max((sum(values) for _, values in points), default=0))
    columns = []
    for index, (label, values) in enumerate(points):
        bottom = float(VIEW_HEIGHT)
        segments = []
        for value, one in zip(values, series, strict=True):
            height = value * VIEW_HEIGHT / top
            bottom -= height
            if value:
                segments.append(Segment(f"{bottom:.3f}", f"{height:.3f}", one.css))
        tooltip = f"{label}: " + ", ".join(f"{value} {one.name}" for value, one in zip(values, series, strict=True))
        columns.append(Column(f"{index * SLOT + (SLOT - BAR) / 2:.1f}", label, tooltip, segments))
    labels = [label for label, _ in points]
    axis = [labels[0], labels[len(labels) // 2], labels[-1]] if len(labels) >= 3 else labels
    totals = [sum(values) for _, values in points]
    summary = f"{title}: {len(points)} columns, from {sum(totals)} in all, the highest {max(totals, default=0)}."
    return ColumnChart(columns=columns, series=list(series), top=top, axis=axis, summary=summary)


def shares(values: Sequence[int]) -> list[str]:
    """Each value as a percentage of the largest, for a bar drawn in a 0-100 viewBox."""
    largest = max(values, default=0)
    return [f"{value * 100 / largest:.2f}" if largest else "0" for value in values]
