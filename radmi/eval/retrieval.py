"""Image <-> report retrieval with a pretrained run: recall@k in both directions, with chance and patient CIs.

Every image of a split is scored against every report of the split with the run's own objective, exactly as
pretraining's held-out retrieval does (:func:`radmi.engines.pretrain_metrics.report_scores`: local MI scores
every region against every sentence, reduces over regions with its aggregate and averages over the report's
sentences; global MI and TVDIM score the pooled image vector against the report vector).

The gallery of reports holds each distinct report text once: the images of one study share their report, and
reports with word-for-word the same text (after tokenization; the key of
:class:`radmi.transforms.text.SentenceTextKeys`) are the same answer to any query. So:

- **image -> report**: the rank of the image's report among the N_r distinct reports; ties count against it.
  Chance recall@k = min(k, N_r) / N_r.
- **report -> image**: for each distinct report, the rank of its best-scoring image (any image that has that
  report) among all N_i images, the report's other images left out of the count; ties count against it.
  Chance recall@k = 1 - C(N_i - n, k) / C(N_i, k) for a report with n images, averaged over reports.

With ``unique_reports=False`` every image keeps its own copy of its report (the pairing of pretraining's
``ReportRetrieval``, which then reproduces its held-out recall). 95% CIs resample patients (an image's
``subject_id``; a report's is that of its first image).

``radmi retrieve RUN_DIR --data DATA --split test`` writes ``retrieval.json`` and ``report.md``; ``--query
FILE.dcm --top 5`` lists the study ids of the best reports for one image (never report text).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radmi.errors import CacheError, ManifestError

KS = (1, 5, 10)
DIRECTIONS = ("image_to_report", "report_to_image")
DIRECTION_TITLES = {"image_to_report": "image -> report", "report_to_image": "report -> image"}


@dataclass
class RetrievalSet:
    """Features of a split's images and of its distinct reports.

    Attributes:
        images: image features (``image_global`` N_i x E and/or ``image_local`` N_i x E x h x w), CPU float32.
        texts: report features (``text_sentences`` N_r x K x E + ``sentence_mask`` N_r x K and/or
            ``text_global`` N_r x E), CPU float32 (mask bool).
        image_report: N_i, the index of each image's report in ``texts``.
        dicom_id, subject_id, study_id: N_i str.
        report_studies: N_r lists of the study ids that have that report text.
    """

    images: dict[str, torch.Tensor]
    texts: dict[str, torch.Tensor]
    image_report: np.ndarray
    dicom_id: np.ndarray
    subject_id: np.ndarray
    study_id: np.ndarray
    report_studies: list[list[str]] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.image_report)

    @property
    def n_reports(self) -> int:
        return len(self.report_studies)

    def report_subject(self) -> np.ndarray:
        """N_r: the patient of each report's first image (bootstrap groups of report queries)."""
        first = np.full(self.n_reports, -1, dtype=np.int64)
        for i, r in enumerate(self.image_report):
            if first[r] < 0:
                first[r] = i
        return self.subject_id[first]


def _ids(value: Any, n: int) -> np.ndarray:
    if value is None:
        return np.full(n, "-1")
    if isinstance(value, torch.Tensor):
        value = (value.as_tensor() if hasattr(value, "as_tensor") else value).cpu().numpy()
    return np.asarray(value).astype(str)


@torch.no_grad()
def collect_features(
    run: Any, batches: Iterable[Mapping[str, Any]], crop_size: int | None = None, unique_reports: bool = True
) -> RetrievalSet:
    """Image and report features of every batch (sample dicts stacked: ``image`` B x 1 x S x S, ``input_ids``,
    ``attention_mask``, ``sentence_ids`` B x T, ``study_id``, ``subject_id``, ``dicom_id``).

    Args:
        run: a :class:`radmi.eval.explain.PretrainedRun` (or an object with its attributes).
        batches: e.g. a DataLoader over :func:`retrieval_dataset`.
        crop_size: the run's validation centre crop (:func:`radmi.eval.zero_shot.run_crop_size`).
        unique_reports: one gallery entry per distinct report text (True), or one per image.
    """
    from radmi.eval.zero_shot import image_features, text_features
    from radmi.transforms.text import SentenceTextKeys

    keys_of = SentenceTextKeys(int(run.max_sentences))
    images: dict[str, list[torch.Tensor]] = {}
    texts: dict[str, list[torch.Tensor]] = {}
    image_report: list[int] = []
    studies: list[list[str]] = []
    index_of: dict[int, int] = {}
    dicom, subject, study = [], [], []
    for batch in batches:
        n = int(batch["image"].shape[0])
        if n == 0:
            continue
        for key, value in image_features(run, batch["image"], crop_size).items():
            images.setdefault(key, []).append(value.float().cpu())
        study_ids = _ids(batch.get("study_id"), n)
        _, report_key = keys_of(batch["input_ids"], batch["sentence_ids"])
        new_rows = []
        for b in range(n):
            key = int(report_key[b]) if unique_reports else -(len(image_report) + 1)
            if key not in index_of:
                index_of[key] = len(studies)
                studies.append([])
                new_rows.append(b)
            r = index_of[key]
            if study_ids[b] not in studies[r]:
                studies[r].append(study_ids[b])
            image_report.append(r)
        if new_rows:
            rows = torch.as_tensor(new_rows)
            features = text_features(
                run, batch["input_ids"][rows], batch["attention_mask"][rows], batch["sentence_ids"][rows]
            )
            for key, value in features.items():
                texts.setdefault(key, []).append(value.cpu() if value.dtype == torch.bool else value.float().cpu())
        dicom_ids = batch.get("dicom_id")
        dicom.append(np.asarray([""] * n if dicom_ids is None else list(dicom_ids), dtype=str))
        subject.append(_ids(batch.get("subject_id"), n))
        study.append(study_ids)
    if not image_report:
        raise ValueError("no images to retrieve from")
    return RetrievalSet(
        images={k: torch.cat(v) for k, v in images.items()},
        texts={k: torch.cat(v) for k, v in texts.items()},
        image_report=np.asarray(image_report, dtype=np.int64),
        dicom_id=np.concatenate(dicom),
        subject_id=np.concatenate(subject),
        study_id=np.concatenate(study),
        report_studies=studies,
    )


@torch.no_grad()
def score_matrix(
    objective: torch.nn.Module,
    images: Mapping[str, torch.Tensor],
    texts: Mapping[str, torch.Tensor],
    chunk: int = 64,
) -> np.ndarray:
    """``N_i x N_r`` float32 scores of every image against every report, in chunks, with the objective's own
    scoring (:func:`radmi.engines.pretrain_metrics.report_scores`)."""
    from radmi.engines.pretrain_metrics import report_scores

    n_images = next(iter(images.values())).shape[0]
    n_texts = next(iter(texts.values())).shape[0]
    out = np.empty((n_images, n_texts), dtype=np.float32)
    for i in range(0, n_images, chunk):
        image_part = {k: v[i : i + chunk] for k, v in images.items()}
        for j in range(0, n_texts, chunk):
            text_part = {k: v[j : j + chunk] for k, v in texts.items()}
            out[i : i + chunk, j : j + chunk] = report_scores(objective, image_part, text_part).float().cpu().numpy()
    return out


def retrieval_ranks(scores: np.ndarray, image_report: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks, ties counted against the right answer.

    Args:
        scores: ``N_i x N_r`` (image rows, report columns).
        image_report: N_i, the column of each image's report (every column has at least one image).

    Returns:
        ``(image_ranks N_i, report_ranks N_r)``: the rank of each image's report among the N_r reports, and the
        rank of each report's best own image among all images, the report's other images not counted.
    """
    scores = np.asarray(scores, dtype=np.float64)
    image_report = np.asarray(image_report, dtype=np.int64)
    n_images, n_reports = scores.shape
    own = scores[np.arange(n_images), image_report]
    image_ranks = (scores >= own[:, None]).sum(axis=1) - 1
    positive = np.zeros((n_images, n_reports), dtype=bool)
    positive[np.arange(n_images), image_report] = True
    best = np.where(positive, scores, -np.inf).max(axis=0)  # N_r
    report_ranks = ((scores >= best[None, :]) & ~positive).sum(axis=0)
    return image_ranks, report_ranks


def report_chance(n_images: int, positives: np.ndarray, k: int) -> float:
    """Mean over reports of P(one of its n images is in a random top k of N_i): 1 - C(N_i - n, k) / C(N_i, k)."""
    values = [1.0 - math.comb(n_images - int(n), k) / math.comb(n_images, k) if k < n_images else 1.0
              for n in positives]  # fmt: skip
    return float(np.mean(values)) if values else float("nan")


def _bootstrap_ci(hits: np.ndarray, groups: np.ndarray, n_bootstrap: int, seed: int) -> tuple[float | None, float | None]:
    from radmi.eval.metrics import patient_bootstrap_weights

    if n_bootstrap <= 0 or len(hits) == 0:
        return None, None
    weights = patient_bootstrap_weights(groups, n_bootstrap, seed).astype(np.float64)
    totals = weights.sum(1)
    draws = (weights @ hits.astype(np.float64))[totals > 0] / totals[totals > 0]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def retrieval_metrics(
    scores: np.ndarray,
    image_report: np.ndarray,
    image_groups: Sequence | None = None,
    report_groups: Sequence | None = None,
    ks: Sequence[int] = KS,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Recall@k in both directions with chance levels and patient-bootstrap 95% CIs.

    Returns:
        ``{"n_images", "n_reports", "image_to_report": {"recall_at_k": {"value", "ci_low", "ci_high", "chance"}},
        "report_to_image": {...}, "median_rank": {...}}`` (recall as fractions in [0, 1], ranks 1-based).
    """
    image_report = np.asarray(image_report, dtype=np.int64)
    n_images, n_reports = np.asarray(scores).shape
    image_ranks, report_ranks = retrieval_ranks(scores, image_report)
    positives = np.bincount(image_report, minlength=n_reports)
    image_groups = np.arange(n_images) if image_groups is None else np.asarray(image_groups).astype(str)
    report_groups = np.arange(n_reports) if report_groups is None else np.asarray(report_groups).astype(str)
    out: dict[str, Any] = {"n_images": int(n_images), "n_reports": int(n_reports), "n_bootstrap": int(n_bootstrap)}
    for direction, ranks, groups in (("image_to_report", image_ranks, image_groups),
                                     ("report_to_image", report_ranks, report_groups)):  # fmt: skip
        block = {}
        for k in ks:
            hits = ranks < k
            low, high = _bootstrap_ci(hits, groups, n_bootstrap, seed)
            chance = (min(k, n_reports) / n_reports if direction == "image_to_report"
                      else report_chance(n_images, positives, k))  # fmt: skip
            block[f"recall_at_{k}"] = {"value": float(hits.mean()), "ci_low": low, "ci_high": high, "chance": chance}
        out[direction] = block
    out["median_rank"] = {"image_to_report": float(np.median(image_ranks) + 1),
                          "report_to_image": float(np.median(report_ranks) + 1)}  # fmt: skip
    return out


def _fmt(entry: Mapping[str, Any]) -> str:
    value = f"{entry['value']:.3f}"
    return value if entry.get("ci_low") is None else f"{value} ({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"


def retrieval_markdown(metrics: Mapping[str, Any], title: str = "Image-report retrieval") -> str:
    """``report.md``: recall@k (95% CI) and chance, both directions."""
    ks = [int(key.rsplit("_", 1)[1]) for key in metrics["image_to_report"]]
    lines = [
        f"# {title}",
        "",
        f"{metrics['n_images']} images, {metrics['n_reports']} distinct reports; 95% CIs from "
        f"{metrics['n_bootstrap']} bootstrap draws resampling patients. Ties count against the right answer.",
        "",
        "| direction | " + " | ".join(f"recall@{k}" for k in ks) + " | " + " | ".join(f"chance@{k}" for k in ks)
        + " | median rank |",
        "|---|" + "---|" * (2 * len(ks) + 1),
    ]
    for direction in DIRECTIONS:
        block = metrics[direction]
        cells = [_fmt(block[f"recall_at_{k}"]) for k in ks] + [f"{block[f'recall_at_{k}']['chance']:.3f}" for k in ks]
        lines.append(f"| {DIRECTION_TITLES[direction]} | " + " | ".join(cells)
                     + f" | {metrics['median_rank'][direction]:g} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ data
def check_cache(cache_dir: str | PathLike, settings: Mapping[str, Any]) -> None:
    """Raise a :class:`CacheError` unless the cache holds what the run read in pretraining: images of its
    ``image_size``, reports tokenized by its ``text_model`` with its ``max_length`` (keys missing from
    ``settings`` are not checked)."""
    from radmi.data.cache import load_cache_info
    from radmi.data.source import check_cache_image_size

    if "image_size" in settings:
        check_cache_image_size(cache_dir, int(settings["image_size"]))
    params = load_cache_info(cache_dir)["params"]
    text_model = settings.get("text_model")
    if text_model is not None and str(params["tokenizer"]) != str(text_model):
        raise CacheError(
            f"the cache was tokenized with {params['tokenizer']} but the run's text model is {text_model}; "
            "pass the manifest instead (it is tokenized with the run's tokenizer)",
            path=cache_dir,
        )
    if "max_length" in settings and int(params["max_length"]) != int(settings["max_length"]):
        raise CacheError(
            f"the cache holds {params['max_length']} tokens per report but the run reads {settings['max_length']}; "
            "pass the manifest instead, or a cache prepared with the run's max_length",
            path=cache_dir,
        )


def check_data(run_dir: str | PathLike, data: str | PathLike, trust: bool = False) -> None:
    """Fail fast, before any model loads: ``data`` must exist and, when it is a cache, match the run."""
    from radmi.data.source import open_source
    from radmi.eval.zero_shot import run_settings

    source = open_source(data)
    if source.is_cache:
        check_cache(source.path, run_settings(run_dir, trust=trust))


def retrieval_dataset(run: Any, data: str | PathLike, split: str = "test"):
    """The images and report tokens of ``split``: a prepared cache read as it is (its tokenizer and
    ``max_length`` must be the run's, :func:`check_cache`), or a manifest / MIMIC-CXR-layout folder read and
    tokenized with the run's tokenizer (``radmi.data.pipeline.sample_transform``)."""
    from radmi.data.source import open_source

    source = open_source(data)
    if source.is_cache:
        from radmi.data.cache import CachedDataset
        from radmi.eval.zero_shot import run_settings

        run_dir = getattr(run, "run_dir", None)
        trust = bool(getattr(run, "trusted", False))
        settings = {**(run_settings(run_dir, trust=trust) if run_dir is not None else {}),
                    "image_size": int(run.image_size), "max_length": int(run.max_length)}  # fmt: skip
        check_cache(source.path, settings)
        dataset = CachedDataset(source.path, split=split)
        if len(dataset) == 0:
            raise CacheError(f"no rows in split {split!r}", path=source.path)
        return dataset
    from radmi.data.dataset import make_dataset
    from radmi.data.pipeline import sample_transform

    table = source.manifest_table()
    table = table[table["split"] == split]
    if len(table) == 0:
        raise ManifestError(f"no rows in split {split!r}", path=data)
    if (table["report_path"].astype(str).str.strip() == "").any():
        raise ManifestError(
            f"{int((table['report_path'].astype(str).str.strip() == '').sum())} images of split {split!r} have "
            "no report; retrieval needs an image-report pair for every image",
            path=data,
        )
    transform = sample_transform(int(run.image_size), tokenizer=run.tokenizer, max_length=int(run.max_length))
    return make_dataset(table.reset_index(drop=True), transform)


@dataclass
class RetrievalResult:
    """:func:`evaluate_retrieval`'s output: the metrics dict, the features and the score matrix."""

    metrics: dict[str, Any]
    features: RetrievalSet
    scores: np.ndarray
    facts: dict[str, Any]


def evaluate_retrieval(
    run: Any,
    data: str | PathLike,
    split: str = "test",
    out_dir: str | PathLike | None = None,
    ks: Sequence[int] = KS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    unique_reports: bool = True,
    trust: bool = False,
) -> RetrievalResult:
    """Image <-> report recall@k of a pretrained run on a split (``radmi retrieve``).

    Args:
        run: a pretraining run directory or a loaded :class:`~radmi.eval.explain.PretrainedRun`.
        data: a prepared cache, a manifest CSV or a MIMIC-CXR-layout folder (every image needs a report).
        split: the split; its images are the queries and its distinct reports the gallery (and back).
        out_dir: where ``retrieval.json`` and ``report.md`` go (None: nothing is written).
        ks, n_bootstrap, seed, batch_size, device: recall cut-offs, bootstrap, batching, device.
        unique_reports: see the module docstring.
        trust: evaluate the run's config even if the run is not trusted (:mod:`radmi.trust`).
    """
    from radmi.engines.classify import data_loader
    from radmi.eval.zero_shot import load_run, run_crop_size

    run = load_run(run, device, trust=trust)
    crop = run_crop_size(run)
    dataset = retrieval_dataset(run, data, split)
    features = collect_features(run, data_loader(dataset, batch_size=batch_size), crop, unique_reports)
    scores = score_matrix(run.objective, features.images, features.texts)
    metrics = retrieval_metrics(
        scores, features.image_report, features.subject_id, features.report_subject(), ks, n_bootstrap, seed
    )
    loss = run.objective.loss
    facts = {
        "run_dir": str(getattr(run, "run_dir", "")), "objective": str(loss.kind),
        "aggregate": getattr(loss, "aggregate", None), "data": str(data), "split": split,
        "image_size": int(run.image_size), "crop_size": crop, "unique_reports": bool(unique_reports),
        "bootstrap_seed": seed,
    }  # fmt: skip
    result = RetrievalResult(metrics, features, scores, facts)
    if out_dir is not None:
        write_retrieval(result, out_dir)
    return result


def write_retrieval(result: RetrievalResult, out_dir: str | PathLike) -> dict[str, Path]:
    """``retrieval.json`` (facts and metrics) and ``report.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "retrieval.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps({"run": result.facts, **result.metrics}, indent=2) + "\n")
    name = Path(result.facts["run_dir"]).name or "run"
    title = f"Image-report retrieval: {result.facts['objective']} MI run {name}, split {result.facts['split']}"
    paths["markdown"].write_text(retrieval_markdown(result.metrics, title))
    return paths


@torch.no_grad()
def query_reports(run: Any, features: RetrievalSet, image_path: str | PathLike, top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` reports of the gallery that best match one image file (DICOM or PNG/JPG).

    Returns:
        ``[{"rank", "study_id", "same_text_studies", "score"}]``: the report's study id (its first study), how
        many other studies have word-for-word the same report, and the critic score. Never the report text.
    """
    from radmi.data.pipeline import image_transforms
    from radmi.eval.zero_shot import image_features, run_crop_size

    sample = {"image_path": str(image_path)}
    for transform in image_transforms(int(run.image_size)):
        sample = transform(sample)
    image = torch.as_tensor(sample["image"]).float()
    feats = {k: v.float().cpu() for k, v in image_features(run, image[None], run_crop_size(run)).items()}
    scores = score_matrix(run.objective, feats, features.texts)[0]
    order = np.argsort(-scores, kind="stable")[: max(0, int(top))]
    return [
        {
            "rank": rank + 1,
            "study_id": features.report_studies[r][0],
            "same_text_studies": len(features.report_studies[r]) - 1,
            "score": float(scores[r]),
        }
        for rank, r in enumerate(order)
    ]
