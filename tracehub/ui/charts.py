"""Hourly charts as server-rendered SVG: stacked bars and lines over the dashboard's hour buckets.

No inline styles (the CSP refuses them): geometry is SVG attributes, colours are classes that
dashboard.css fills from the page's colour variables, so light and dark schemes both work. Every
chart is an image with a <title> and a <desc> (the caller's summary), and every hour
a hit area whose <title> is the tooltip. Tick labels carry their hour (`data-hour`), which
dashboard.js turns into the viewer's local time. Every text is escaped.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 170
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 22
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True)
class Series:
    label: str
    css: str  # a class of dashboard.css (s-ok, s-bad, s-accent, s-info, s-warn, s-soft)
    values: Sequence[float | None]  # None: no value that hour (a gap in a line)


def nice_max(value: float) -> float:
    """The axis' top: 1, 2, 2.5 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def _hour_label(ns: int, daily: bool) -> str:
    at = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
    return at.strftime("%m-%d") if daily else at.strftime("%H:%M")


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


class Chart:
    def __init__(self, chart_id: str, title: str, starts: Sequence[int], fmt: Callable[[float], str]) -> None:
        self.id, self.title, self.starts, self.fmt = chart_id, title, list(starts), fmt
        self.step = PLOT_W / max(1, len(self.starts))

    def _frame(self, top: float, desc: str, body: list[str]) -> Markup:
        parts = [
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-labelledby="{self.id}-t {self.id}-d" preserveAspectRatio="xMidYMid meet">',
            f'<title id="{self.id}-t">{escape(self.title)}</title>',
            f'<desc id="{self.id}-d">{escape(desc)}</desc>',
        ]
        for frac in (0.0, 0.5, 1.0):  # grid lines and the y axis' labels
            y = TOP + PLOT_H * (1 - frac)
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_n(y)}" y2="{_n(y)}"/>')
            parts.append(f'<text class="axis" x="{LEFT - 6}" y="{_n(y + 4)}" text-anchor="end">'
                         f'{escape(self.fmt(top * frac))}</text>')
        parts.extend(body)
        parts.extend(self._ticks())
        parts.append("</svg>")
        return Markup("".join(parts))

    def _ticks(self) -> list[str]:
        n = len(self.starts)
        if not n:
            return []
        daily = n > 48
        every = 24 if daily else max(1, math.ceil(n / 6))
        out = []
        for i, start in enumerate(self.starts):
            if daily and start % (24 * HOUR_NS):
                continue
            if not daily and i % every:
                continue
            x = LEFT + self.step * (i + 0.5)
            out.append(f'<text class="axis" x="{_n(x)}" y="{HEIGHT - 6}" text-anchor="middle" '
                       f'data-hour="{_iso(start)}" data-daily="{int(daily)}">{_hour_label(start, daily)}</text>')
        return out

    def _hit(self, i: int, lines: list[str]) -> str:
        """The hour's hover area and its tooltip."""
        x = LEFT + self.step * i
        tip = escape(f"{_iso(self.starts[i])[:16].replace('T', ' ')} UTC\n" + "\n".join(lines))
        return (f'<rect class="hit" x="{_n(x)}" y="{TOP}" width="{_n(self.step)}" height="{PLOT_H}">'
                f'<title>{tip}</title></rect>')

    def bars(self, stacks: Sequence[Series], desc: str) -> Markup:
        """Stacked bars, one per hour, `stacks` bottom up."""
        n = len(self.starts)
        totals = [sum(s.values[i] or 0 for s in stacks) for i in range(n)]
        top = nice_max(max(totals, default=0))
        body = []
        gap = min(2.0, self.step * 0.2)
        for i in range(n):
            x = LEFT + self.step * i + gap / 2
            base = 0.0
            for s in stacks:
                v = s.values[i] or 0
                if v <= 0:
                    continue
                h = PLOT_H * v / top
                y = TOP + PLOT_H * (1 - (base + v) / top)
                body.append(f'<rect class="{s.css}" x="{_n(x)}" y="{_n(y)}" '
                            f'width="{_n(max(self.step - gap, 0.5))}" height="{_n(h)}"/>')
                base += v
            shown = [s for s in stacks if s.values[i]] or list(stacks[:1])  # a quiet hour says 0 once
            body.append(self._hit(i, [f"{s.label}: {self.fmt(s.values[i] or 0)}" for s in shown]))
        return self._frame(top, desc, body)

    def lines(self, lines: Sequence[Series], desc: str) -> Markup:
        """One line per series; hours without a value break the line."""
        n = len(self.starts)
        top = nice_max(max((v for s in lines for v in s.values if v is not None), default=0))
        body = []
        for s in lines:
            path, pen_down = [], False
            for i, v in enumerate(s.values):
                if v is None:
                    pen_down = False
                    continue
                x, y = LEFT + self.step * (i + 0.5), TOP + PLOT_H * (1 - v / top)
                path.append(f"{'L' if pen_down else 'M'}{_n(x)} {_n(y)}")
                pen_down = True
                body.append(f'<circle class="{s.css}" cx="{_n(x)}" cy="{_n(y)}" r="2"/>')
            if path:
                body.insert(0, f'<path class="line {s.css}" d="{" ".join(path)}" fill="none"/>')
        for i in range(n):
            body.append(self._hit(i, [f"{s.label}: {'–' if s.values[i] is None else self.fmt(s.values[i] or 0)}"
                                      for s in lines]))
        return self._frame(top, desc, body)
