"""Grounding scores against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radmi.eval.grounding import (
    centre_map,
    pointing_hit,
    score_pair,
    summarize_grounding,
    top_regions,
    topk_iou,
    uniform_pointing_chance,
)

INPUT = (64, 64)  # 4 x 4 regions of 16 x 16 pixels


def _peak(i: int, j: int, shape=(4, 4)) -> np.ndarray:
    m = np.zeros(shape)
    m[i, j] = 1.0
    return m


def test_pointing_game_by_hand():
    box = (32.0, 0.0, 64.0, 20.0)  # x0, y0, x1, y1: top-right quarter-ish
    # region (0, 2) has its centre at (row 8, col 40): inside
    assert pointing_hit(_peak(0, 2), box, INPUT, tolerance=0)
    # region (1, 2): centre row 24 > y1 = 20 -> outside without tolerance, inside with 5 px
    assert not pointing_hit(_peak(1, 2), box, INPUT, tolerance=0)
    assert pointing_hit(_peak(1, 2), box, INPUT, tolerance=5)
    # region (0, 1): centre col 24 < x0 = 32 -> outside even with 5 px
    assert not pointing_hit(_peak(0, 1), box, INPUT, tolerance=5)


def test_topk_iou_by_hand():
    box = (0.0, 0.0, 32.0, 16.0)  # exactly regions (0, 0) and (0, 1): 512 pixels
    scores = np.arange(16, dtype=float)[::-1].reshape(4, 4)  # region (0, 0) highest, then (0, 1), ...
    # top 1/16: region (0, 0) only, 256 px inside the box: IoU 256 / 512
    assert topk_iou(scores, box, INPUT, fraction=1 / 16) == pytest.approx(0.5)
    # top 2/16: both regions = the box exactly
    assert topk_iou(scores, box, INPUT, fraction=2 / 16) == pytest.approx(1.0)
    # top 3/16: 768 px of which 512 in the box
    assert topk_iou(scores, box, INPUT, fraction=3 / 16) == pytest.approx(512 / 768)
    # a fraction rounds up to whole regions
    assert top_regions(scores, 0.1).sum() == 2


def test_chance_levels_by_hand():
    box = (0.0, 0.0, 32.0, 32.0)  # the top-left 2 x 2 regions
    assert uniform_pointing_chance(box, (4, 4), INPUT, tolerance=0) == pytest.approx(4 / 16)
    # the centre map's argmax is region (1, 1) (first of the four central ones): inside
    assert np.unravel_index(np.argmax(centre_map((4, 4))), (4, 4)) == (1, 1)
    scores = score_pair(None, box, (4, 4), INPUT, tolerance=0, fraction=4 / 16)
    assert np.isnan(scores["pointing"]) and scores["centre_pointing"] == 1.0
    # the centre's top 4 regions are the central 2 x 2: overlap 1 region of 4 -> IoU 256 / (7 * 256)
    assert scores["centre_iou"] == pytest.approx(1 / 7)
    assert 0.0 < scores["uniform_iou"] < 1.0


def test_summary_per_label_and_overall():
    pairs = pd.DataFrame(
        {
            "label": ["A", "A", "B", "B"],
            "subject_id": ["1", "2", "3", "3"],
            "pointing": [1.0, 0.0, 1.0, 1.0],
            "iou": [0.5, 0.1, 0.3, 0.2],
        }
    )
    table = summarize_grounding(pairs, n_bootstrap=200, columns=["pointing", "iou"])
    get = table.set_index(["label", "score"])
    assert get.loc[("A", "pointing"), "mean"] == 0.5
    assert get.loc[("B", "iou"), "mean"] == pytest.approx(0.25)
    assert get.loc[("overall", "pointing"), "mean"] == 0.75
    assert get.loc[("overall", "pointing"), "n"] == 4
    # patient 3 always moves with both of its rows: B's pointing is 1 in every draw
    assert get.loc[("B", "pointing"), "ci_low"] == 1.0
    assert get.loc[("A", "pointing"), "ci_low"] <= 0.5 <= get.loc[("A", "pointing"), "ci_high"]


def test_default_tolerance_scales_with_the_input_size():
    from radmi.eval.grounding import default_tolerance

    assert default_tolerance((224, 224)) == pytest.approx(15.0)
    assert default_tolerance((64, 64)) == pytest.approx(15.0 * 64 / 224)
    # score_pair without a tolerance uses the scaled one (4.3 px at 64 px); 8 x 8 regions of 8 px each
    box = (40.0, 40.0, 56.0, 56.0)
    peak = np.zeros((8, 8))
    peak[4, 4] = 1.0  # region centre (36, 36): 4 px above and left of the box corner
    assert score_pair(peak, box, (8, 8), (64, 64), tolerance=15.0)["pointing"] == 1.0
    assert score_pair(peak, box, (8, 8), (64, 64))["pointing"] == 1.0
    peak = np.zeros((8, 8))
    peak[3, 3] = 1.0  # region centre (28, 28): 12 px outside -> a hit only with the unscaled 15 px
    assert score_pair(peak, box, (8, 8), (64, 64), tolerance=15.0)["pointing"] == 1.0
    assert score_pair(peak, box, (8, 8), (64, 64))["pointing"] == 0.0
