"""Where throughput stops growing as concurrency rises."""
from __future__ import annotations

from .config import SWEEP_GROWTH


def knee(levels: list[tuple[int, float | None]], growth: float = SWEEP_GROWTH) -> dict:
    """From (concurrency, requests/s) pairs in rising order, the level after which a step adds < `growth`."""
    if not levels:
        raise ValueError("no sweep levels")
    for (prev_c, prev_t), (c, t) in zip(levels, levels[1:], strict=False):
        if not prev_t:
            continue
        gain = ((t or 0.0) - prev_t) / prev_t
        if gain < growth:
            return {
                "concurrency": prev_c, "requests_per_s": prev_t, "next_concurrency": c, "next_gain": gain,
                "message": (f"throughput stops growing at concurrency {prev_c} ({prev_t:.2f} req/s): "
                            f"concurrency {c} adds {gain:+.0%}"),
            }
    top_c, top_t = levels[-1]
    shown = "-" if top_t is None else f"{top_t:.2f}"
    return {
        "concurrency": None, "requests_per_s": top_t, "next_concurrency": None, "next_gain": None,
        "message": f"throughput still growing at concurrency {top_c} ({shown} req/s): try higher levels",
    }
