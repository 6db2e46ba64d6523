"""Small charts as inline SVG: the monitoring report and the history page need no script
and no network (they open offline, behind a proxy, and in an e-mail attachment)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 560, 200, 36
COLOURS = ("#4a6fa5", "#d08c3c", "#5a9e6f", "#a05195")


def bars(labels: Sequence[str], series: dict[str, Sequence[float]], *, title: str) -> str:
    """Grouped bars: one group per label, one bar per series (shares, rates)."""
    top = max([*(v for values in series.values() for v in values), 1e-9])
    group = (WIDTH - 2 * PAD) / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    parts = [_frame(title, top)]
    for s, (name, values) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        for i, value in enumerate(values):
            height = (HEIGHT - 2 * PAD) * value / top
            x = PAD + i * group + group * 0.1 + s * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(name)} '
                f"{escape(labels[i])}: {value:.4g}</title></rect>"
            )
    for i, label in enumerate(labels):
        x = PAD + (i + 0.5) * group
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(_legend(list(series)))
    return _svg(parts, title)


def lines(labels: Sequence[str], series: dict[str, Sequence[float | None]], *, title: str) -> str:
    """Lines over time (one point per run; a missing value leaves a gap)."""
    known = [v for values in series.values() for v in values if v is not None]
    if not known:
        return _svg(
            [
                f'<text x="{PAD}" y="16" font-weight="bold">{escape(title)}</text>'
                f'<text x="{PAD}" y="{HEIGHT // 2}">no values yet</text>'
            ],
            title,
        )
    top = max(known)
    step = (WIDTH - 2 * PAD) / max(len(labels) - 1, 1)
    parts = [_frame(title, top)]
    for s, (name, values) in enumerate(series.items()):
        colour = COLOURS[s % len(COLOURS)]
        points = [
            (PAD + i * step, HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top)
            for i, v in enumerate(values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for (x, y), value in zip(points, [v for v in values if v is not None], strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}: {value:.4g}</title></circle>"
            )
    if labels:
        for i in (0, len(labels) - 1):
            anchor = "start" if i == 0 else "end"
            parts.append(
                f'<text x="{PAD + i * step:.1f}" y="{HEIGHT - PAD + 14}" '
                f'text-anchor="{anchor}">{escape(labels[i])}</text>'
            )
    parts.append(_legend(list(series)))
    return _svg(parts, title)


def _frame(title: str, top: float) -> str:
    return (
        f'<text x="{PAD}" y="16" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{top:.3g}</text>'
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>'
    )


def _legend(names: list[str]) -> str:
    return "".join(
        f'<rect x="{WIDTH - PAD - 110}" y="{24 + 14 * i}" width="10" height="10" '
        f'fill="{COLOURS[i % len(COLOURS)]}"/><text x="{WIDTH - PAD - 96}" y="{33 + 14 * i}">'
        f"{escape(name)}</text>"
        for i, name in enumerate(names)
    )


def _svg(parts: list[str], title: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-size="11" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )
