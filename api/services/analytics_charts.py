"""PNG charts of stored analytics (matplotlib's Agg canvas, no pyplot state: safe on a thread).

Rendering is CPU work: api/services/analytics.py runs these in the thread pool, never on the event loop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from domain.analytics import LATE_BUCKETS

CHARTS = ("on_time_trend", "deliveries_heatmap", "late_minutes")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def on_time_trend(days: Sequence[str], rates: Sequence[float | None]) -> bytes:
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.add_subplot()
    points = [(d, r * 100) for d, r in zip(days, rates, strict=True) if r is not None]
    ax.plot([d for d, _ in points], [r for _, r in points], marker="o")
    ax.set_ylim(0, 105)
    ax.set_ylabel("on time (%)")
    ax.set_title("On-time delivery rate")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def deliveries_heatmap(days: Sequence[str], hourly: Sequence[Sequence[int]]) -> bytes:
    fig = Figure(figsize=(9, 1.2 + 0.35 * max(1, len(days))), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow([list(row) for row in hourly] or [[0] * 24], aspect="auto", cmap="viridis")
    ax.set_xticks(range(0, 24, 2))
    ax.set_yticks(range(len(days)), labels=list(days), fontsize=8)
    ax.set_xlabel("local hour")
    ax.set_title("Deliveries per hour")
    fig.colorbar(image, ax=ax, label="deliveries")
    return _png(fig)


def late_minutes(histogram: dict[str, int]) -> bytes:
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(list(LATE_BUCKETS), [histogram.get(b, 0) for b in LATE_BUCKETS])
    ax.set_xlabel("minutes late")
    ax.set_ylabel("deliveries")
    ax.set_title("Late deliveries by minutes late")
    return _png(fig)
