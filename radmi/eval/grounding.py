"""Grounding scores: does a sentence's region x sentence score map point at the finding the sentence describes?

Inputs per (image, finding) pair: the critic's score map of the describing sentence (``h x w`` regions, from
``LocalMILoss.score_map``) and the finding's ground-truth box, mapped into the model's input pixels. Region
``(i, j)`` of an ``h x w`` map over an ``H x W`` input covers rows ``[i H/h, (i+1) H/h)`` and columns
``[j W/w, (j+1) W/w)``. Boxes are ``(x0, y0, x1, y1)`` in pixel-corner coordinates (x = column, y = row).

- **Pointing game** (Zhang et al., 2016): a hit when the centre of the highest-scoring region lies inside the
  box grown by ``tolerance`` pixels on every side: 15 px for a 224 px input (the original protocol), scaled
  with the input size by default, so a small input does not get a relatively larger target.
- **Top-k IoU**: the regions holding the top ``k`` fraction of scores form a mask; its IoU with the box, both
  rasterized on the input pixel grid (a pixel counts when its centre is inside).
- **Chance levels**: *uniform* (the expected pointing hit and top-k IoU of a map whose maximum is a uniformly
  random region; pointing exact, IoU by seeded draws) and *centre* (a map peaking at the image centre).
- **Global MI** has no sentence map. When its image encoder has a local map, the box is scored with the
  *region-to-report* map instead (each region's local feature against the report's global text vector,
  :meth:`radmi.eval.explain.PretrainedRun.report_map`), the same map for every box of the image.
- **Sentence specificity**: on images with two or more boxed findings described by different sentences,
  each box is also scored with the maps of the *other* findings' sentences of the same image (averaged over
  them); ``own - other`` is the pointing (and IoU) gained by using the sentence that describes the box
  (:func:`summarize_specificity`). A map that ignores the sentence scores ``own - other = 0`` exactly.

Scores are summarized per finding type and overall with patient-level bootstrap 95% CIs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radmi.eval.metrics import patient_bootstrap_weights

#: Pointing-game tolerance in input pixels at a 224 px input (Zhang et al., "Top-down neural attention by
#: excitation backprop"); other input sizes scale it (:func:`default_tolerance`).
DEFAULT_TOLERANCE = 15.0
TOLERANCE_REFERENCE_SIZE = 224


def default_tolerance(input_hw: tuple[int, int]) -> float:
    """The pointing-game tolerance for an ``H x W`` input: 15 px at 224 px, proportional to the larger side."""
    return DEFAULT_TOLERANCE * max(input_hw) / TOLERANCE_REFERENCE_SIZE


#: Fraction of regions in the top-k mask.
DEFAULT_TOP_FRACTION = 0.1
OVERALL = "overall"


def boxes_to_input(boxes: np.ndarray, meta) -> np.ndarray:
    """Map boxes from stored-image pixels into the resized model input.

    Args:
        boxes: N x 4 ``(x0, y0, x1, y1)`` on the image as loaded (DICOM Rows x Columns), corner convention.
        meta: the resized image's ``MetaTensor`` or meta dict (``XRayResize`` writes the scale and offset).

    Returns:
        N x 4 float64 boxes in input pixels, clipped to nothing (callers clip if they need to).
    """
    from radmi.transforms.image import map_to_resized

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack([boxes[:, [1, 0]], boxes[:, [3, 2]]], axis=1)  # N x 2 x (row, col)
    mapped = map_to_resized(corners.reshape(-1, 2), meta).reshape(-1, 2, 2)
    return np.stack([mapped[:, 0, 1], mapped[:, 0, 0], mapped[:, 1, 1], mapped[:, 1, 0]], axis=1)


def region_centres(grid_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows h, cols w)``: centre coordinates of the regions in input pixels."""
    (h, w), (height, width) = grid_hw, input_hw
    return (np.arange(h) + 0.5) * height / h, (np.arange(w) + 0.5) * width / w


def _inside(rows: np.ndarray, cols: np.ndarray, box: Sequence[float], tolerance: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return (r >= y0 - tolerance) & (r <= y1 + tolerance) & (c >= x0 - tolerance) & (c <= x1 + tolerance)


def pointing_hit(
    score_map: np.ndarray,
    box: Sequence[float],
    input_hw: tuple[int, int],
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """Whether the centre of the argmax region of ``score_map`` (h x w) lies in ``box`` grown by ``tolerance``."""
    score_map = np.asarray(score_map, dtype=np.float64)
    rows, cols = region_centres(score_map.shape, input_hw)
    i, j = np.unravel_index(int(np.argmax(score_map)), score_map.shape)
    return bool(_inside(rows[[i]], cols[[j]], box, tolerance)[0, 0])


def top_regions(score_map: np.ndarray, fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
    """h x w boolean mask of the ``ceil(fraction * h * w)`` highest-scoring regions (ties: first in raster order)."""
    score_map = np.asarray(score_map, dtype=np.float64)
    n_top = max(1, math.ceil(fraction * score_map.size))
    order = np.argsort(-score_map.ravel(), kind="stable")[:n_top]
    mask = np.zeros(score_map.size, dtype=bool)
    mask[order] = True
    return mask.reshape(score_map.shape)


def _region_mask_pixels(region_mask: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """h x w region mask -> H x W pixel mask (pixel centre's region)."""
    (h, w), (height, width) = region_mask.shape, input_hw
    row_region = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    col_region = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    return region_mask[np.ix_(row_region, col_region)]


def box_pixels(box: Sequence[float], input_hw: tuple[int, int]) -> np.ndarray:
    """H x W mask of the pixels whose centre lies inside ``box``."""
    height, width = input_hw
    return _inside(np.arange(height) + 0.5, np.arange(width) + 0.5, box, 0.0)


def mask_iou(region_mask: np.ndarray, box: Sequence[float], input_hw: tuple[int, int]) -> float:
    """IoU, on the input pixel grid, of an h x w region mask with a box."""
    pixels = _region_mask_pixels(np.asarray(region_mask, dtype=bool), input_hw)
    target = box_pixels(box, input_hw)
    union = np.logical_or(pixels, target).sum()
    return float(np.logical_and(pixels, target).sum() / union) if union else 0.0


def topk_iou(
    score_map: np.ndarray,
    box: Sequence[float],
    input_hw: tuple[int, int],
    fraction: float = DEFAULT_TOP_FRACTION,
) -> float:
    """IoU of the top-``fraction`` region mask of ``score_map`` with ``box`` (input pixels)."""
    return mask_iou(top_regions(score_map, fraction), box, input_hw)


def centre_map(grid_hw: tuple[int, int]) -> np.ndarray:
    """An h x w map peaking at the image centre (minus the distance of each region centre to it)."""
    h, w = grid_hw
    rows, cols = np.meshgrid(np.arange(h) + 0.5 - h / 2, np.arange(w) + 0.5 - w / 2, indexing="ij")
    return -np.hypot(rows, cols)


def uniform_pointing_chance(
    box: Sequence[float],
    grid_hw: tuple[int, int],
    input_hw: tuple[int, int],
    tolerance: float = DEFAULT_TOLERANCE,
) -> float:
    """Expected pointing hit when the argmax is a uniformly random region: the share of regions that hit."""
    rows, cols = region_centres(grid_hw, input_hw)
    return float(_inside(rows, cols, box, tolerance).mean())


def uniform_iou_chance(
    box: Sequence[float],
    grid_hw: tuple[int, int],
    input_hw: tuple[int, int],
    fraction: float = DEFAULT_TOP_FRACTION,
    n_draws: int = 64,
    seed: int = 0,
) -> float:
    """Mean top-k IoU of ``n_draws`` random score maps (i.i.d. uniform scores, seeded)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([topk_iou(rng.random(grid_hw), box, input_hw, fraction) for _ in range(n_draws)]))


def score_pair(
    score_map: np.ndarray | None,
    box: Sequence[float],
    grid_hw: tuple[int, int],
    input_hw: tuple[int, int],
    tolerance: float | None = None,
    fraction: float = DEFAULT_TOP_FRACTION,
    seed: int = 0,
) -> dict[str, float]:
    """All grounding numbers of one (sentence map, box) pair (``tolerance=None``: :func:`default_tolerance`).

    Returns ``pointing`` and ``iou`` (NaN when ``score_map`` is None, e.g. global MI) and the chance levels
    ``uniform_pointing``, ``uniform_iou``, ``centre_pointing``, ``centre_iou``.
    """
    if tolerance is None:
        tolerance = default_tolerance(input_hw)
    centre = centre_map(grid_hw)
    out = {
        "pointing": float("nan")
        if score_map is None
        else float(pointing_hit(score_map, box, input_hw, tolerance)),
        "iou": float("nan") if score_map is None else topk_iou(score_map, box, input_hw, fraction),
        "uniform_pointing": uniform_pointing_chance(box, grid_hw, input_hw, tolerance),
        "uniform_iou": uniform_iou_chance(box, grid_hw, input_hw, fraction, seed=seed),
        "centre_pointing": float(pointing_hit(centre, box, input_hw, tolerance)),
        "centre_iou": topk_iou(centre, box, input_hw, fraction),
    }
    return out


SCORE_COLUMNS = ("pointing", "iou", "uniform_pointing", "uniform_iou", "centre_pointing", "centre_iou")
#: Per-box columns of the specificity comparison in the pairs table (NaN when the box has no other sentence).
OTHER_COLUMNS = ("other_pointing", "other_iou", "n_other")


# ------------------------------------------------------------------------------------------------ specificity
def pointing_matrix(
    score_maps: np.ndarray,
    boxes: np.ndarray,
    input_hw: tuple[int, int],
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """Pointing hit of every (box, map) pair at once; entry ``[n, k]`` equals ``pointing_hit(maps[k], boxes[n])``.

    Args:
        score_maps: K x h x w score maps (e.g. the K sentences of one report over one image's regions).
        boxes: N x 4 ``(x0, y0, x1, y1)`` in input pixels.
        input_hw: ``(H, W)`` of the model input.
        tolerance: pointing-game tolerance in input pixels.

    Returns:
        N x K float64 of 0/1 hits (ties in a map: the first region in raster order is its argmax).
    """
    maps = np.asarray(score_maps, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n_maps, h, w = maps.shape
    rows, cols = region_centres((h, w), input_hw)
    peak = maps.reshape(n_maps, -1).argmax(axis=1)  # K, first maximum as np.argmax
    r, c = rows[peak // w][None, :], cols[peak % w][None, :]  # 1 x K
    x0, y0, x1, y1 = (boxes[:, i : i + 1] for i in range(4))  # N x 1 each
    inside = (r >= y0 - tolerance) & (r <= y1 + tolerance) & (c >= x0 - tolerance) & (c <= x1 + tolerance)
    return inside.astype(np.float64)


def topk_iou_matrix(
    score_maps: np.ndarray,
    boxes: np.ndarray,
    input_hw: tuple[int, int],
    fraction: float = DEFAULT_TOP_FRACTION,
) -> np.ndarray:
    """Top-k IoU of every (box, map) pair at once; entry ``[n, k]`` equals ``topk_iou(maps[k], boxes[n])``.

    Args:
        score_maps: K x h x w score maps.
        boxes: N x 4 ``(x0, y0, x1, y1)`` in input pixels.
        input_hw: ``(H, W)`` of the model input.
        fraction: share of regions in each map's top-k mask (rounded up, ties: first in raster order).

    Returns:
        N x K float64 IoUs on the input pixel grid (0 when both masks are empty).
    """
    maps = np.asarray(score_maps, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n_maps, h, w = maps.shape
    height, width = input_hw
    n_top = max(1, math.ceil(fraction * h * w))
    order = np.argsort(-maps.reshape(n_maps, -1), axis=1, kind="stable")[:, :n_top]  # K x n_top
    top = np.zeros((n_maps, h * w), dtype=np.float64)
    np.put_along_axis(top, order, 1.0, axis=1)
    row_region = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    col_region = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    pixels = top.reshape(n_maps, h, w)[:, row_region][:, :, col_region]  # K x H x W
    # a box's pixel mask is separable: rows inside x columns inside
    centres_r, centres_c = np.arange(height) + 0.5, np.arange(width) + 0.5
    box_rows = ((centres_r[None] >= boxes[:, 1:2]) & (centres_r[None] <= boxes[:, 3:4])).astype(np.float64)
    box_cols = ((centres_c[None] >= boxes[:, 0:1]) & (centres_c[None] <= boxes[:, 2:3])).astype(np.float64)
    intersection = np.einsum("khw,nh,nw->nk", pixels, box_rows, box_cols)  # N x K
    union = pixels.sum(axis=(1, 2))[None, :] + (box_rows.sum(1) * box_cols.sum(1))[:, None] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def other_sentences_mask(sentence_index: np.ndarray, n_maps: int) -> np.ndarray:
    """Which maps are *another* finding's sentence, per box of one image.

    Args:
        sentence_index: N sentence indices, one per box of the image (a box's own map; outside ``[0, K)``:
            no map, e.g. truncated by the tokenizer).
        n_maps: K, the number of sentence maps of the image.

    Returns:
        N x K bool: ``[n, k]`` is True when sentence k describes some other box of the image and is not box n's
        own sentence (two boxes described by one sentence are not each other's "other").
    """
    index = np.asarray(sentence_index, dtype=np.int64).ravel()
    valid = (index >= 0) & (index < n_maps)
    described = np.zeros(n_maps, dtype=bool)
    described[index[valid]] = True
    return described[None, :] & (np.arange(n_maps)[None, :] != index[:, None])


def specificity_scores(
    score_maps: np.ndarray,
    boxes: np.ndarray,
    sentence_index: np.ndarray,
    input_hw: tuple[int, int],
    tolerance: float | None = None,
    fraction: float = DEFAULT_TOP_FRACTION,
) -> dict[str, np.ndarray]:
    """Own-sentence and other-sentence grounding of each box of one image.

    Args:
        score_maps: K x h x w sentence maps of the image's report.
        boxes: N x 4 boxes in input pixels.
        sentence_index: N, the index of the sentence that describes each box (own map).
        input_hw: ``(H, W)`` of the model input.
        tolerance: pointing tolerance in input pixels (None: :func:`default_tolerance`).
        fraction: top-k fraction of the IoU mask.

    Returns:
        N-vectors (float64): ``own_pointing``, ``own_iou`` (NaN when the own sentence has no map);
        ``other_pointing``, ``other_iou``: the mean over the other findings' sentence maps
        (:func:`other_sentences_mask`; NaN when there is none); ``n_other``: how many maps that mean is over.
    """
    if tolerance is None:
        tolerance = default_tolerance(input_hw)
    maps = np.asarray(score_maps, dtype=np.float64)
    index = np.asarray(sentence_index, dtype=np.int64).ravel()
    n_maps = maps.shape[0]
    if n_maps == 0:
        nan = np.full(len(index), np.nan)
        return {"own_pointing": nan, "own_iou": nan.copy(), "other_pointing": nan.copy(),
                "other_iou": nan.copy(), "n_other": np.zeros(len(index))}  # fmt: skip
    hits = pointing_matrix(maps, boxes, input_hw, tolerance)  # N x K
    ious = topk_iou_matrix(maps, boxes, input_hw, fraction)  # N x K
    has_own = (index >= 0) & (index < n_maps)
    own_at = np.clip(index, 0, max(n_maps - 1, 0))[:, None]
    others = other_sentences_mask(index, n_maps).astype(np.float64)
    n_other = others.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        other_pointing = (hits * others).sum(axis=1) / n_other
        other_iou = (ious * others).sum(axis=1) / n_other
    nan = np.full(len(index), np.nan)
    return {
        "own_pointing": np.where(has_own, np.take_along_axis(hits, own_at, axis=1)[:, 0], nan),
        "own_iou": np.where(has_own, np.take_along_axis(ious, own_at, axis=1)[:, 0], nan),
        "other_pointing": np.where(n_other > 0, other_pointing, nan),
        "other_iou": np.where(n_other > 0, other_iou, nan),
        "n_other": n_other,
    }


def summarize_grounding(
    pairs: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0, columns: Sequence[str] = SCORE_COLUMNS
) -> pd.DataFrame:
    """Mean of each score per finding type and overall, with patient-level bootstrap 95% CIs.

    Args:
        pairs: one row per (image, finding) with ``label``, ``subject_id`` and the score columns.
        n_bootstrap: B draws (0: no CIs).
        seed: bootstrap seed.
        columns: score columns to summarize (all-NaN columns give NaN means, e.g. a model without maps).

    Returns:
        One row per ``(label, score)``: ``label, score, n, mean, ci_low, ci_high`` (label ``"overall"`` last).
    """
    rows = []
    groups = [(name, part) for name, part in pairs.groupby("label", sort=True)] + [(OVERALL, pairs)]
    for name, part in groups:
        weights = patient_bootstrap_weights(part["subject_id"].astype(str).to_numpy(), n_bootstrap, seed)
        for column in columns:
            values = part[column].to_numpy(dtype=np.float64)
            if np.isnan(values).all():
                rows.append(
                    {
                        "label": name,
                        "score": column,
                        "n": len(values),
                        "mean": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                    }
                )
                continue
            low = high = np.nan
            if n_bootstrap > 0:
                totals = weights.sum(1)
                draws = (weights @ values)[totals > 0] / totals[totals > 0]
                low, high = np.percentile(draws, [2.5, 97.5])
            rows.append(
                {
                    "label": name,
                    "score": column,
                    "n": len(values),
                    "mean": float(values.mean()),
                    "ci_low": float(low),
                    "ci_high": float(high),
                }
            )
    return pd.DataFrame(rows, columns=["label", "score", "n", "mean", "ci_low", "ci_high"])


#: Scores of the specificity table, in display order.
SPECIFICITY_SCORES = (
    "own_pointing",
    "other_pointing",
    "own_minus_other_pointing",
    "own_iou",
    "other_iou",
    "own_minus_other_iou",
)
#: Per-finding specificity rows need at least this many boxes (the overall row is always given).
MIN_SPECIFICITY_BOXES = 10


def specificity_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """The boxes that have another finding's sentence on their image, with own, other and own - other scores.

    Args:
        pairs: :func:`grounding_pairs` output (``pointing``, ``iou``, ``other_pointing``, ``other_iou``,
            ``n_other``, ``label``, ``subject_id``, ``dicom_id``).

    Returns:
        One row per such box: ``label, subject_id, dicom_id, n_other`` and :data:`SPECIFICITY_SCORES`.
    """
    columns = ["label", "subject_id", "dicom_id", "n_other", *SPECIFICITY_SCORES]
    if "n_other" not in pairs:
        return pd.DataFrame(columns=columns)
    keep = pairs[(pairs["n_other"] > 0) & pairs["pointing"].notna() & pairs["other_pointing"].notna()]
    out = keep[["label", "subject_id", "dicom_id", "n_other"]].copy()
    for score in ("pointing", "iou"):
        out[f"own_{score}"] = keep[score].to_numpy(dtype=np.float64)
        out[f"other_{score}"] = keep[f"other_{score}"].to_numpy(dtype=np.float64)
        out[f"own_minus_other_{score}"] = out[f"own_{score}"] - out[f"other_{score}"]
    return out[columns].reset_index(drop=True)


def summarize_specificity(
    pairs: pd.DataFrame,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_boxes: int = MIN_SPECIFICITY_BOXES,
) -> pd.DataFrame:
    """Sentence specificity: own-sentence vs other-sentence grounding of the same boxes, with patient CIs.

    Each box on an image with two or more boxed findings (described by different sentences) is scored with its
    own sentence's map and with the mean over the other findings' sentence maps of that image. Every bootstrap
    draw resamples patients once and applies the same weights to ``own``, ``other`` and ``own - other``, so the
    CI of the difference is that of a paired comparison (and its mean is exactly own minus other).

    Args:
        pairs: :func:`grounding_pairs` output (the per-box table, ``pairs.csv``).
        n_bootstrap: B patient-bootstrap draws (0: no CIs).
        seed: bootstrap seed.
        min_boxes: per-finding rows are kept only with at least this many boxes; ``overall`` always is.

    Returns:
        Long table like :func:`summarize_grounding`: one row per ``(label, score)`` with
        ``label, score, n, mean, ci_low, ci_high``; scores :data:`SPECIFICITY_SCORES`; label ``"overall"`` last.
        Without any eligible box (or for a run without sentence maps) only NaN ``overall`` rows with ``n = 0``.
    """
    frame = specificity_frame(pairs)
    if frame.empty:
        empty = {"n": 0, "mean": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        return pd.DataFrame([{"label": OVERALL, "score": s, **empty} for s in SPECIFICITY_SCORES])
    summary = summarize_grounding(frame, n_bootstrap, seed, columns=SPECIFICITY_SCORES)
    keep = (summary["label"] == OVERALL) | (summary["n"] >= min_boxes)
    return summary[keep].reset_index(drop=True)


def _cell(summary: pd.DataFrame, label: str, score: str, signed: bool = False) -> str:
    """``mean (low-high)`` of one summary row, ``-`` when missing or NaN."""
    row = summary[(summary["label"] == label) & (summary["score"] == score)]
    if row.empty or np.isnan(row["mean"].iloc[0]):
        return "-"
    r = row.iloc[0]
    form = "+.3f" if signed else ".3f"
    interval = "" if np.isnan(r["ci_low"]) else f" ({r['ci_low']:{form}} to {r['ci_high']:{form}})"
    return f"{r['mean']:{form}}" + interval


def specificity_markdown(summary: pd.DataFrame, title: str = "Sentence specificity") -> str:
    """Table of :func:`summarize_specificity`: own, other and own - other pointing and IoU per finding."""
    lines = [
        f"## {title}",
        "",
        "Boxes on images with two or more boxed findings described by different sentences. *own*: the box "
        "scored with its own sentence's map; *other*: with the other findings' sentence maps of the same image "
        "(mean over them). Patient-bootstrap 95% CIs; own - other is resampled jointly.",
        "",
        "| finding | boxes | own pointing | other pointing | own - other pointing | own IoU | other IoU | own - other IoU |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(summary["label"]):
        n = int(summary[summary["label"] == label]["n"].iloc[0])
        name = f"**{label}**" if label == OVERALL else label
        cells = [_cell(summary, label, s, signed=s.startswith("own_minus")) for s in SPECIFICITY_SCORES]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def specificity_line(summary: pd.DataFrame) -> str:
    """One printed line: overall own, other and own - other pointing with CIs."""
    n = int(summary[summary["label"] == OVERALL]["n"].iloc[0]) if (summary["label"] == OVERALL).any() else 0
    if n == 0:
        return "sentence specificity: no box has another finding's sentence on its image"
    return (
        f"sentence specificity (pointing, {n} boxes): own {_cell(summary, OVERALL, 'own_pointing')}, "
        f"other {_cell(summary, OVERALL, 'other_pointing')}, "
        f"own - other {_cell(summary, OVERALL, 'own_minus_other_pointing', signed=True)}"
    )


# ------------------------------------------------------------------------------------------------ a run
LOCATIONS_FILE = "finding-locations.csv.gz"


def read_locations(data_root: str | Path) -> pd.DataFrame:
    """The demo data's ground-truth boxes (``finding-locations.csv.gz`` at the dataset root)."""
    from radmi.errors import ManifestError

    path = Path(data_root) / LOCATIONS_FILE
    if not path.is_file():
        raise ManifestError(
            f"no {LOCATIONS_FILE}: grounding needs the boxes that `radmi demo-data` writes", path=data_root
        )
    table = pd.read_csv(path, dtype={"dicom_id": str, "study_id": str, "subject_id": str})
    missing = {"dicom_id", "label", "x0", "y0", "x1", "y1", "sentence_index"} - set(table.columns)
    if missing:
        raise ManifestError(f"columns missing: {sorted(missing)}", path=path)
    return table


def grounding_pairs(
    run,
    data_root: str | Path,
    split: str = "test",
    tolerance: float | None = None,
    fraction: float = DEFAULT_TOP_FRACTION,
    max_images: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, int | str]]:
    """Score every (image, finding box) of a split with a pretrained run's sentence maps.

    Args:
        run: a :class:`radmi.eval.explain.PretrainedRun`. Local MI and TVDIM: each box is scored with its
            sentence's map. Global MI: with the region-to-report map (``run.report_map``) when the run has one,
            else the chance columns only.
        data_root: demo-data root (manifest + ``finding-locations.csv.gz``).
        split: which split's images.
        tolerance, fraction: pointing-game tolerance (input pixels; None scales 15 px at 224 px) and top-k fraction.
        max_images: score at most this many images (in manifest order), for quick runs.
        progress: tqdm bar.

    Returns:
        ``(pairs, counts)``: one row per scored box (``label``, ``subject_id``, ``dicom_id``,
        :data:`SCORE_COLUMNS` and the specificity columns :data:`OTHER_COLUMNS`: the box's pointing and IoU
        with the other findings' sentence maps of its image, mean over ``n_other`` of them; NaN and 0 without
        one or without sentence maps), and ``counts``: ``images``, ``boxes``, ``skipped_sentence_truncated``
        (the box's sentence did not fit the tokenizer's length), ``skipped_no_sentence`` (the finding has no
        sentence index), ``boxes_with_other_sentence`` and ``map`` (``sentence``, ``report`` or ``none``).
    """
    from tqdm.auto import tqdm

    from radmi.data.reports import report_sentences
    from radmi.data.source import manifest_table
    from radmi.transforms.dicom import LoadXRay
    from radmi.transforms.image import XRayResize

    locations = read_locations(data_root)
    manifest = manifest_table(data_root)
    manifest = manifest[(manifest["split"] == split) & manifest["dicom_id"].isin(set(locations["dicom_id"]))]
    if max_images is not None:
        manifest = manifest.head(max_images)
    by_image = {key: part for key, part in locations.groupby("dicom_id")}
    load, resize = LoadXRay(), XRayResize(run.image_size)
    use_report_map = bool(getattr(run, "has_report_map", False))
    map_kind = "sentence" if run.has_region_maps else ("report" if use_report_map else "none")
    no_other = {"other_pointing": np.nan, "other_iou": np.nan, "n_other": 0.0}
    rows, skipped, skipped_no_sentence = [], 0, 0
    for record in tqdm(manifest.itertuples(), total=len(manifest), desc="grounding", disable=not progress):
        image = resize(load(record.image_path))
        sentences = report_sentences(Path(record.report_path).read_text(encoding="utf-8-sig"))
        maps = run.sentence_maps(image, sentences)
        report = run.report_map(image, sentences) if maps is None and use_report_map else None
        if maps is not None:
            grid = tuple(maps.shape[1:])
        else:
            grid = tuple(report.shape) if report is not None else _grid_of(run, image)
        boxes = by_image[record.dicom_id]
        mapped = boxes_to_input(boxes[["x0", "y0", "x1", "y1"]].to_numpy(), image)
        input_hw = tuple(image.shape[-2:])
        index = pd.to_numeric(boxes["sentence_index"], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
        spec = None
        if maps is not None:
            spec = specificity_scores(maps, mapped, index, input_hw, tolerance, fraction)
        for n, ((_, box_row), box) in enumerate(zip(boxes.iterrows(), mapped, strict=True)):
            k = int(index[n])
            if k < 0:
                skipped_no_sentence += 1
                continue
            if maps is not None and k >= len(maps):
                skipped += 1
                continue
            score_map = maps[k] if maps is not None else report
            scores = score_pair(score_map, box, grid, input_hw, tolerance, fraction)
            other = no_other if spec is None else {c: float(spec[c][n]) for c in OTHER_COLUMNS}
            rows.append(
                {
                    "label": box_row["label"],
                    "subject_id": str(record.subject_id),
                    "dicom_id": record.dicom_id,
                    **scores,
                    **other,
                }
            )
    pairs = pd.DataFrame(rows, columns=["label", "subject_id", "dicom_id", *SCORE_COLUMNS, *OTHER_COLUMNS])
    counts = {
        "images": len(manifest),
        "boxes": len(rows),
        "skipped_sentence_truncated": skipped,
        "skipped_no_sentence": skipped_no_sentence,
        "boxes_with_other_sentence": int((pairs["n_other"] > 0).sum()),
        "map": map_kind,
    }
    return pairs, counts


def _grid_of(run, image) -> tuple[int, int]:
    """The region grid of the run's image encoder for this input (for chance levels of global MI)."""
    import torch

    with torch.no_grad():
        _, local = run.image_encoder(torch.as_tensor(image, dtype=torch.float32)[None].to(run.device))
    return tuple(local.shape[-2:])


def grounding_markdown(summary: pd.DataFrame, title: str = "Grounding") -> str:
    """Table: one row per finding type, pointing and IoU with CIs, and the chance levels."""

    def cell(label: str, score: str) -> str:
        row = summary[(summary["label"] == label) & (summary["score"] == score)]
        if row.empty or np.isnan(row["mean"].iloc[0]):
            return "-"
        r = row.iloc[0]
        return f"{r['mean']:.3f}" + (
            "" if np.isnan(r["ci_low"]) else f" ({r['ci_low']:.3f}-{r['ci_high']:.3f})"
        )

    lines = [
        f"# {title}",
        "",
        "| finding | boxes | pointing (95% CI) | top-k IoU (95% CI) | uniform pointing | centre pointing | uniform IoU | centre IoU |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(summary["label"]):
        n = int(summary[summary["label"] == label]["n"].iloc[0])
        name = f"**{label}**" if label == OVERALL else label
        lines.append(
            f"| {name} | {n} | {cell(label, 'pointing')} | {cell(label, 'iou')} | {cell(label, 'uniform_pointing')} | "
            f"{cell(label, 'centre_pointing')} | {cell(label, 'uniform_iou')} | {cell(label, 'centre_iou')} |"
        )
    return "\n".join(lines) + "\n"
