"""The live bar charts (crystalwatch.bars): which outcomes are shown, the W&B rows, and the drawn image."""

from __future__ import annotations

import numpy as np
import pytest

from crystalwatch.bars import (
    CONSENSUS_COLOUR,
    LABEL_CHARS,
    ROW,
    SEED_COLOUR,
    TOP_OUTCOMES,
    WIDTH,
    bar_rows,
    bars_rgb,
    shown,
    title,
)
from crystalwatch.records import Record


def record(consensus, centroid=None, seed="s2", outcomes=None) -> Record:
    outcomes = outcomes or [str(i) for i in range(len(consensus))]
    return Record.from_json({
        "schema": "crystalwatch.trajectory/1", "run": "r", "index": 3, "step": 40, "label": "dpo", "model": "m",
        "task": "colour", "kind": "chat", "estimator": "exact", "terminators": "boundary", "library": "abc",
        "outcomes": outcomes, "consensus": list(consensus), "seed": seed if centroid is not None else None,
        "seed_centroid": None if centroid is None else list(centroid), "metrics": {}, "candidate": "liquid",
        "state": "liquid", "events": [], "variants": {},
    })  # fmt: skip


def test_every_outcome_in_order_up_to_the_limit():
    keep, consensus, seed = shown(record([0.1, 0.6, 0.3], [0.2, 0.2, 0.6]))
    assert keep == [0, 1, 2] and consensus.tolist() == [0.1, 0.6, 0.3] and seed.tolist() == [0.2, 0.2, 0.6]


def test_beyond_the_limit_the_most_probable_in_either_distribution():
    n = TOP_OUTCOMES + 4
    consensus = np.full(n, 0.01)
    consensus[[3, 7]] = [0.5, 0.2]
    centroid = np.full(n, 0.01)
    centroid[[15, 3]] = [0.4, 0.1]
    keep, _, _ = shown(record(consensus, centroid))
    assert len(keep) == TOP_OUTCOMES and keep[:3] == [3, 15, 7]  # by max(consensus, seed), ties in outcome order
    assert keep[3:] == [0, 1, 2, 4, 5, 6, 8, 9, 10]


def test_a_centroid_of_another_length_or_none_is_not_drawn():
    assert shown(record([0.5, 0.5], [1.0]))[2] is None
    assert shown(record([0.5, 0.5]))[2] is None


def test_rows_pair_consensus_and_seed_and_keep_unknowns_empty():
    rows = bar_rows(record([0.25, float("nan")], [0.5, 0.5], outcomes=["red", "blue"]))
    assert rows == [
        ["red · consensus", 0.25, "red", "consensus"], ["red · seed s2", 0.5, "red", "seed s2"],
        ["blue · consensus", None, "blue", "consensus"], ["blue · seed s2", 0.5, "blue", "seed s2"],
    ]  # fmt: skip
    assert bar_rows(record([1.0])) == [["0 · consensus", 1.0, "0", "consensus"]]
    assert title(record([1.0], [1.0])) == "colour: step 40 (dpo), consensus vs seed s2"
    assert title(record([1.0])) == "colour: step 40 (dpo), consensus"


def _runs(line: np.ndarray, colour: tuple[int, int, int]) -> list[int]:
    """Lengths of the runs of ``colour`` along one pixel row."""
    hit = np.all(line == colour, axis=-1).astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], hit, [0]])))
    return (edges[1::2] - edges[0::2]).tolist()


@pytest.mark.parametrize("names", [["1", "2", "3"], ["a very long outcome label indeed", "b", "c"]])
def test_the_image_draws_each_probability_to_scale(names):
    consensus, centroid = [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]
    img = bars_rgb(record(consensus, centroid, outcomes=names))
    assert img.dtype == np.uint8 and img.shape == (44 + ROW * 3 + 10, WIDTH, 3)
    left = 14 + 7 * min(max(map(len, names)), LABEL_CHARS)
    scale = (WIDTH - left - 60) / 0.6  # the largest value spans the plotting width
    height = (ROW - 6) // 2
    for row in range(3):
        y = 44 + ROW * row + 3
        blue, orange = img[y + height // 2], img[y + height + height // 2]
        assert max(_runs(blue, CONSENSUS_COLOUR)) == round(consensus[row] * scale) + 1
        assert max(_runs(orange, SEED_COLOUR)) == round(centroid[row] * scale) + 1
    no_seed = bars_rgb(record(consensus))
    assert not np.all(no_seed == SEED_COLOUR, axis=-1).any()  # no seed bars, no seed in the legend
