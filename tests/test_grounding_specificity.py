"""Sentence specificity (own vs other sentence maps) and the global-MI region-to-report map, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from radmi.eval.grounding import (
    SPECIFICITY_SCORES,
    other_sentences_mask,
    pointing_hit,
    pointing_matrix,
    specificity_frame,
    specificity_line,
    specificity_markdown,
    specificity_scores,
    summarize_specificity,
    topk_iou,
    topk_iou_matrix,
)
from radmi.eval.metrics import patient_bootstrap_weights

INPUT = (64, 64)  # 4 x 4 regions of 16 x 16 pixels
#: four disjoint boxes, one per quadrant (x0, y0, x1, y1); region (i, j) centre = (16 i + 8, 16 j + 8)
QUADRANTS = np.array([[0, 0, 32, 32], [32, 0, 64, 32], [0, 32, 32, 64], [32, 32, 64, 64]], dtype=float)
#: a region inside each quadrant's box, and far (> tolerance) from the other quadrants' boxes
QUADRANT_PEAKS = [(0, 0), (0, 3), (3, 0), (3, 3)]


def _peaked(peaks: list[tuple[int, int]], shape=(4, 4)) -> np.ndarray:
    maps = np.zeros((len(peaks), *shape))
    for k, (i, j) in enumerate(peaks):
        maps[k, i, j] = 1.0
    return maps


def test_matrices_equal_the_per_pair_functions():
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, size=(5, 6, 7)).astype(float)  # many ties: first in raster order wins
    corners = rng.uniform(0, 90, size=(9, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)[:, [0, 1, 2, 3]]
    input_hw = (90, 80)
    hits = pointing_matrix(maps, boxes, input_hw, tolerance=4.0)
    ious = topk_iou_matrix(maps, boxes, input_hw, fraction=0.15)
    assert hits.shape == ious.shape == (9, 5)
    for n, box in enumerate(boxes):
        for k, m in enumerate(maps):
            assert hits[n, k] == float(pointing_hit(m, box, input_hw, tolerance=4.0))
            assert ious[n, k] == pytest.approx(topk_iou(m, box, input_hw, fraction=0.15), abs=1e-12)


def test_other_sentences_are_the_other_boxes_sentences():
    # boxes described by sentences 0, 2, 2 (two boxes, one sentence) and 7 (beyond the 5 maps: truncated)
    mask = other_sentences_mask(np.array([0, 2, 2, 7]), n_maps=5)
    assert mask.tolist() == [
        [False, False, True, False, False],
        [True, False, False, False, False],  # sentence 2's other boxes share it: not "other"
        [True, False, False, False, False],
        [True, False, True, False, False],
    ]


def test_own_maps_point_at_their_boxes_and_other_maps_elsewhere():
    # sentence k peaks in quadrant k; boxes n = quadrant n described by sentence n (4 findings)
    scores = specificity_scores(
        _peaked(QUADRANT_PEAKS), QUADRANTS, np.arange(4), INPUT, tolerance=4.0, fraction=1 / 16
    )
    np.testing.assert_array_equal(scores["own_pointing"], [1, 1, 1, 1])
    np.testing.assert_array_equal(scores["other_pointing"], [0, 0, 0, 0])
    np.testing.assert_array_equal(scores["n_other"], [3, 3, 3, 3])
    # top 1/16 = the peak region alone: 256 px inside a 1024 px box -> IoU 1/4 own, 0 other
    np.testing.assert_allclose(scores["own_iou"], 0.25)
    np.testing.assert_allclose(scores["other_iou"], 0.0)


def test_other_is_the_mean_over_the_other_sentences():
    # 3 findings; sentence 1 peaks in quadrant 0, so box 0 is hit by 1 of its 2 other maps, boxes 1 and 2 by none
    maps = _peaked([QUADRANT_PEAKS[0], QUADRANT_PEAKS[0], QUADRANT_PEAKS[2]])
    scores = specificity_scores(maps, QUADRANTS[[0, 1, 2]], np.array([0, 1, 2]), INPUT, tolerance=4.0)
    np.testing.assert_array_equal(scores["own_pointing"], [1, 0, 1])
    np.testing.assert_array_equal(scores["other_pointing"], [0.5, 0.0, 0.0])
    # a single-finding image has no other sentence: NaN, n_other 0
    alone = specificity_scores(maps, QUADRANTS[[0]], np.array([0]), INPUT, tolerance=4.0)
    assert np.isnan(alone["other_pointing"][0]) and alone["n_other"][0] == 0


def _pairs_from_images(images: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Per-box table (as ``grounding_pairs`` writes it) of (subject, maps, boxes, sentence_index) images."""
    rows = []
    for subject, maps, boxes, index in images:
        s = specificity_scores(maps, boxes, index, INPUT, tolerance=4.0, fraction=1 / 16)
        for n in range(len(index)):
            rows.append(
                {
                    "label": f"finding{n}",
                    "subject_id": subject,
                    "dicom_id": f"{subject}-{len(rows)}",
                    "pointing": s["own_pointing"][n],
                    "iou": s["own_iou"][n],
                    "other_pointing": s["other_pointing"][n],
                    "other_iou": s["other_iou"][n],
                    "n_other": s["n_other"][n],
                }
            )
    return pd.DataFrame(rows)


def test_specific_maps_give_own_one_other_zero_difference_one():
    images = []
    for p in range(12):  # patients with 2, 3 or 4 findings, plus single-finding images that are left out
        n = 2 + p % 3
        images.append((f"p{p}", _peaked(QUADRANT_PEAKS[:n]), QUADRANTS[:n], np.arange(n)))
        images.append((f"p{p}", _peaked(QUADRANT_PEAKS[:1]), QUADRANTS[:1], np.arange(1)))
    pairs = _pairs_from_images(images)
    summary = summarize_specificity(pairs, n_bootstrap=200, min_boxes=1)
    get = summary.set_index(["label", "score"])
    n_boxes = sum(2 + p % 3 for p in range(12))
    assert get.loc[("overall", "own_pointing"), "n"] == n_boxes
    assert get.loc[("overall", "own_pointing"), "mean"] == 1.0
    assert get.loc[("overall", "other_pointing"), "mean"] == 0.0
    diff = get.loc[("overall", "own_minus_other_pointing")]
    assert diff["mean"] == 1.0 and diff["ci_low"] == 1.0 and diff["ci_high"] == 1.0  # CI excludes 0
    assert get.loc[("overall", "own_minus_other_iou"), "mean"] == pytest.approx(0.25)
    # per finding: finding3 only on 4 patients' images -> dropped with min_boxes = 5, overall stays
    labels = set(summarize_specificity(pairs, n_bootstrap=0, min_boxes=5)["label"])
    assert labels == {"finding0", "finding1", "finding2", "overall"}
    assert list(summary["label"])[-1] == "overall"
    text = specificity_markdown(summary)
    assert (
        "| **overall** | 36 | 1.000 (1.000 to 1.000) | 0.000 (0.000 to 0.000) | +1.000 (+1.000 to +1.000)"
        in text
    )
    assert "own - other +1.000 (+1.000 to +1.000)" in specificity_line(summary)


def test_a_map_that_ignores_the_sentence_scores_zero_exactly():
    rng = np.random.default_rng(3)
    images = []
    for p in range(10):
        n = 2 + p % 3
        one = rng.random((4, 4))
        maps = np.repeat(one[None], n, axis=0)  # the same map for every sentence
        images.append((f"p{p}", maps, QUADRANTS[:n], np.arange(n)))
    pairs = _pairs_from_images(images)
    frame = specificity_frame(pairs)
    assert (frame["own_minus_other_pointing"] == 0).all() and (frame["own_minus_other_iou"] == 0).all()
    summary = summarize_specificity(pairs, n_bootstrap=200).set_index(["label", "score"])
    for score in ("own_minus_other_pointing", "own_minus_other_iou"):
        row = summary.loc[("overall", score)]
        assert row["mean"] == 0.0 and row["ci_low"] == 0.0 and row["ci_high"] == 0.0


def test_difference_is_bootstrapped_jointly_over_patients():
    rng = np.random.default_rng(7)
    n = 40
    pairs = pd.DataFrame(
        {
            "label": "A",
            "subject_id": [f"s{i // 2}" for i in range(n)],  # two boxes per patient
            "dicom_id": [f"d{i}" for i in range(n)],
            "pointing": rng.integers(0, 2, n).astype(float),
            "iou": rng.random(n),
            "other_pointing": rng.random(n),
            "other_iou": rng.random(n),
            "n_other": 1.0,
        }
    )
    summary = summarize_specificity(pairs, n_bootstrap=300, seed=5).set_index(["label", "score"])
    weights = patient_bootstrap_weights(pairs["subject_id"].to_numpy(), 300, 5)
    own = weights @ pairs["pointing"].to_numpy() / weights.sum(1)
    other = weights @ pairs["other_pointing"].to_numpy() / weights.sum(1)
    low, high = np.percentile(own - other, [2.5, 97.5])  # the same draws for own and other
    row = summary.loc[("overall", "own_minus_other_pointing")]
    assert row["mean"] == pytest.approx(pairs["pointing"].mean() - pairs["other_pointing"].mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_no_eligible_box_gives_empty_overall_rows():
    pairs = pd.DataFrame(
        {
            "label": ["A"],
            "subject_id": ["1"],
            "dicom_id": ["d"],
            "pointing": [1.0],
            "iou": [0.5],
            "other_pointing": [np.nan],
            "other_iou": [np.nan],
            "n_other": [0.0],
        }
    )
    summary = summarize_specificity(pairs)
    assert list(summary["score"]) == list(SPECIFICITY_SCORES) and (summary["n"] == 0).all()
    assert summary["mean"].isna().all()
    assert "no box" in specificity_line(summary)


# ------------------------------------------------------------------------------------------------ global MI row
def _tiny_features():
    # 1 image, E = 2, 2 x 2 regions; regions (as E-vectors): (1,0), (0,1), (1,1), (-1,0); report (3, 4)
    local = torch.tensor([[[1.0, 0.0], [1.0, -1.0]], [[0.0, 1.0], [1.0, 0.0]]])[None]  # 1 x 2 x 2 x 2
    report = torch.tensor([[3.0, 4.0]])
    return local, report


def test_region_report_map_through_the_dot_critic_by_hand():
    from radmi.eval.explain import region_report_scores
    from radmi.losses.critics import DotCritic

    local, report = _tiny_features()
    critic = DotCritic(temperature=0.5, learnable_temperature=False)
    scores = region_report_scores(local, report, critic)
    # cosines of (1,0), (0,1), (1,1), (-1,0) with (3,4)/5: 0.6, 0.8, 7/(5 sqrt 2), -0.6; over tau = 0.5
    expected = torch.tensor([[0.6, 0.8], [7 / (5 * 2**0.5), -0.6]]) * 2
    torch.testing.assert_close(scores, expected[None])


def test_region_report_map_through_the_bilinear_critic_by_hand():
    from radmi.eval.explain import region_report_scores
    from radmi.losses.critics import BilinearCritic

    local, report = _tiny_features()
    critic = BilinearCritic(2, 2)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
    # v^T W s with W s = (3 + 8, -4) = (11, -4): regions (1,0) -> 11, (0,1) -> -4, (1,1) -> 7, (-1,0) -> -11
    torch.testing.assert_close(
        region_report_scores(local, report, critic), torch.tensor([[[11.0, -4.0], [7.0, -11.0]]])
    )
    # a critic that cannot take these sizes falls back to the cosine of the normalized features
    wrong = BilinearCritic(3, 2)
    expected = torch.tensor([[0.6, 0.8], [7 / (5 * 2**0.5), -0.6]])
    torch.testing.assert_close(region_report_scores(local, report, wrong), expected[None])
    torch.testing.assert_close(region_report_scores(local, report, None), expected[None])


def test_region_report_map_through_the_concat_mlp_critic():
    from radmi.eval.explain import region_report_scores
    from radmi.losses.critics import ConcatMLPCritic

    torch.manual_seed(0)
    local, report = _tiny_features()
    critic = ConcatMLPCritic(2, 2, hidden=[4])
    regions = local.flatten(2).transpose(1, 2)[0]  # R x E
    by_pair = torch.stack([critic(region[None], report)[0, 0] for region in regions])  # one pair at a time
    torch.testing.assert_close(region_report_scores(local, report, critic), by_pair.reshape(1, 2, 2))
