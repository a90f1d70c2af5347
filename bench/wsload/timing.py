"""Send times carried in the positions' `seq`, and latency histograms (tenths of a millisecond ->
count) that merge across processes."""

from __future__ import annotations

from typing import Any

SEQ_SLOTS = 1000  # positions per frame at most (the server's MAX_BATCH)
DRAIN_S = 15.0  # after a run: how long to wait for the last acknowledgements
QUIET_S = 3.0  # the dispatcher stops counting once no position arrived for this long after a run


def hist_merge(into: dict[int, int], other: dict[Any, int]) -> None:
    for key, count in other.items():
        k = int(key)
        into[k] = into.get(k, 0) + count


def hist_percentile(hist: dict[int, int], q: float) -> float:
    """Nearest-rank percentile in milliseconds; NaN when empty."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = max(1, min(total, round(q / 100 * total + 0.5)))
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            return key / 10
    return max(hist) / 10
