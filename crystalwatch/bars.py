"""One record's consensus against its nearest seed, as the live trackers show it (no matplotlib).

:func:`shown` picks the outcomes a chart shows (all, or the :data:`TOP_OUTCOMES` most probable in either
distribution; the report's matplotlib chart uses it too). :func:`bar_rows` gives them as the long table behind
W&B's native bar chart; :func:`bars_rgb` draws them with Pillow for TensorBoard (a few milliseconds; a matplotlib
render took ~80 ms, and a measurement draws one per task).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from crystalwatch.records import Record, number

TOP_OUTCOMES = 12
CONSENSUS_COLOUR = (49, 130, 189)  # #3182bd, as in the report
SEED_COLOUR = (253, 141, 60)  # #fd8d3c
BAR_COLUMNS = ("bar", "probability", "outcome", "series")
WIDTH, ROW, LABEL_CHARS = 640, 30, 20


def _values(raw: Any) -> np.ndarray:
    """Probabilities as floats; null or non-finite ones become NaN (drawn as no bar)."""
    return np.array([math.nan if x is None else x for x in map(number, raw or ())], dtype=float)


def shown(record: Record) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """(indices of the outcomes to show, consensus, the seed's centroid or None): every outcome in order, or the
    TOP_OUTCOMES most probable in either distribution, most probable first."""
    consensus, centroid = _values(record.consensus), record.seed_centroid
    seed = _values(centroid) if centroid and len(centroid) == len(consensus) else None
    keep = list(range(len(consensus)))
    if len(consensus) > TOP_OUTCOMES:
        top = np.nan_to_num(np.fmax(consensus, seed) if seed is not None else consensus)
        keep = [int(i) for i in np.argsort(-top, kind="stable")[:TOP_OUTCOMES]]
    return keep, consensus, seed


def title(record: Record) -> str:
    """``<task>: step N (label), consensus vs seed sK`` (the chart's title)."""
    seed, label = record.get("seed"), f" ({record.label})" if record.label else ""
    return f"{record.task}: step {record.step}{label}, consensus" + (f" vs seed {seed}" if seed else "")


def _series(record: Record) -> tuple[list[int], list[str], list[tuple[str, np.ndarray]]]:
    """(shown indices, outcome labels, [(series name, values)]): the consensus, then the seed when there is one."""
    keep, consensus, seed = shown(record)
    series = [("consensus", consensus)] + ([(f"seed {record.get('seed')}", seed)] if seed is not None else [])
    return keep, [str(o) for o in record.outcomes], series


def bar_rows(record: Record) -> list[list[Any]]:
    """The shown outcomes as rows of :data:`BAR_COLUMNS`, consensus and seed side by side per outcome: the bar's
    label (``<outcome> · consensus`` / ``<outcome> · seed sK``), its probability (None when unknown), outcome,
    series."""
    keep, outcomes, series = _series(record)
    rows = []
    for i in keep:
        for name, values in series:
            p = None if math.isnan(values[i]) else float(values[i])
            rows.append([f"{outcomes[i]} · {name}", p, outcomes[i], name])
    return rows


@lru_cache(maxsize=1)
def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=12)


def bars_rgb(record: Record) -> np.ndarray:
    """Horizontal bars (consensus blue, seed orange, probability written at each bar) as an HxWx3 uint8 image."""
    from PIL import Image, ImageDraw

    keep, outcomes, series = _series(record)
    bars = [(name, values, colour) for (name, values), colour in zip(series, (CONSENSUS_COLOUR, SEED_COLOUR))]
    top, left, right = 44, 14 + 7 * min(max((len(outcomes[i]) for i in keep), default=1), LABEL_CHARS), 60
    img = Image.new("RGB", (WIDTH, top + ROW * len(keep) + 10), "white")
    draw, font = ImageDraw.Draw(img), _font()
    draw.text((8, 6), title(record), fill="black", font=font)
    x = 8
    for name, _, colour in bars:
        draw.rectangle((x, 26, x + 10, 36), fill=colour)
        draw.text((x + 14, 24), name, fill="black", font=font)
        x += 24 + int(draw.textlength(name, font=font))
    largest = max((float(np.nanmax(v[keep], initial=0.0)) for _, v, _ in bars if keep), default=0.0)
    scale = (WIDTH - left - right) / max(largest, 1e-9)
    height = (ROW - 6) // len(bars)
    for row, i in enumerate(keep):
        y = top + ROW * row
        label = outcomes[i] if len(outcomes[i]) <= LABEL_CHARS else outcomes[i][: LABEL_CHARS - 3] + "..."
        draw.text((8, y + ROW // 2 - 8), label, fill="black", font=font)
        for k, (_, values, colour) in enumerate(bars):
            if math.isnan(values[i]):
                continue
            y0 = y + 3 + k * height
            end = left + int(round(values[i] * scale))
            draw.rectangle((left, y0, max(end, left + 1), y0 + height - 2), fill=colour)
            draw.text((end + 4, y0 + height // 2 - 7), f"{values[i]:.2f}", fill="#333333", font=font)
    return np.asarray(img)
