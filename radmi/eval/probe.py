"""Frozen-feature linear probe: pooled image features extracted once, then scikit-learn logistic regression.

The protocol (docs/evaluation.md, "Frozen-feature linear probe"):

1. :func:`load_probe_encoder` builds the image encoder exactly as the findings recipe does
   (``radmi.engines.classify.build_classifier``: ``"random"``, a pretraining run directory or an
   ``image_encoder.pt``) and puts it in eval mode (batch norms use their running statistics).
2. :func:`extract_features` runs it once over each split, without augmentation, and keeps the pooled global
   embedding (``B x E``) with the labels, the label mask (the uncertainty/blank policy of the data, the same
   tensors the recipe's loss reads), the edema severity and the patient ids.
3. :func:`train_subset` applies the project's patient-level label-fraction draw
   (:func:`radmi.data.fractions.subsample_label_fraction`, the same call ``classification_dataset`` makes).
4. :func:`fit_probe`: the features are standardized (``StandardScaler`` fit on the labelled training rows), then
   one ``LogisticRegression`` (L-BFGS) per finding on that finding's masked-in training rows, with C chosen
   from a small grid by the validation AUROC of that finding. A finding whose training rows hold a single class
   is ``not estimable`` and gets no test number. Edema severity (0-3) gets one multinomial logistic regression,
   C chosen by the mean of the three ordinal validation AUROCs.
5. :func:`evaluate_probe` scores the test split with the project's metrics (:func:`~radmi.eval.metrics.finding_metrics`
   and :func:`~radmi.eval.metrics.edema_ordinal_aucs`: AUROC with patient-bootstrap CIs, ordinal edema AUCs).

Because the encoder is frozen and deterministic in eval mode, this is the same model family as the recipe's
``--mode linear`` head, but fit to convergence by a second-order-ish solver on standardized features instead of
a few epochs of AdamW on raw ones.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radmi.data.labels import CHEXPERT_LABELS, EDEMA_MISSING
from radmi.eval.metrics import (
    OK,
    Estimate,
    FindingMetrics,
    edema_ordinal_aucs,
    finding_metrics,
    label_status,
)

logger = logging.getLogger(__name__)

#: Inverse regularization strengths tried for every finding (ascending, so ties go to the stronger penalty).
DEFAULT_C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Status of a finding (or the edema task) whose labelled training rows hold a single class.
NOT_ESTIMABLE = "not estimable"
SPLITS = ("train", "validate", "test")
FEATURES_FILE = "features_{split}.npz"


# ------------------------------------------------------------------------------------------------ features
@dataclass
class Features:
    """Pooled image features of one split and what the metrics need about each row.

    Attributes:
        features: ``N x E`` float32 global embeddings of the frozen encoder.
        labels: ``N x L`` float32 targets after the label policy.
        label_mask: ``N x L`` float32, 1 where the entry counts (uncertain/blank masking as in the recipe).
        edema_severity: ``N`` int64 severity 0..3, -1 where absent.
        subject_id: ``N`` patient ids (bootstrap groups and the label-fraction draw).
        dicom_id: ``N`` image ids (str).
    """

    features: np.ndarray
    labels: np.ndarray
    label_mask: np.ndarray
    edema_severity: np.ndarray
    subject_id: np.ndarray
    dicom_id: np.ndarray

    def __len__(self) -> int:
        return len(self.features)

    def take(self, rows: np.ndarray) -> Features:
        """The rows ``rows`` (integer positions or a boolean mask), as a new :class:`Features`."""
        return Features(**{name: getattr(self, name)[rows] for name in _FIELDS})

    def select(self, dicom_ids: Sequence[str]) -> Features:
        """The rows whose ``dicom_id`` is in ``dicom_ids`` (in this set's order)."""
        return self.take(np.isin(self.dicom_id.astype(str), np.asarray(list(dicom_ids), dtype=str)))

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickled objects); :meth:`load` reads it back."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _FIELDS}
        arrays["subject_id"] = arrays["subject_id"].astype(str)
        arrays["dicom_id"] = arrays["dicom_id"].astype(str)
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Features:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in _FIELDS})


_FIELDS = ("features", "labels", "label_mask", "edema_severity", "subject_id", "dicom_id")


def load_probe_encoder(
    init: str | Path = "random", encoder: Mapping[str, Any] | None = None, seed: int = 0
) -> torch.nn.Module:
    """The frozen image encoder, loaded by the findings recipe's own code, in eval mode.

    Args:
        init: ``"random"``, a pretraining run directory, its ``models/`` folder or an ``image_encoder.pt``
            (``radmi.engines.classify.build_classifier`` loads ``models/image_encoder*``).
        encoder: ``ImageEncoder`` kwargs for ``init="random"`` (a loaded encoder keeps its own).
        seed: seed of a random init (drawn inside a forked RNG: the global torch RNG is left untouched).

    Returns:
        ``ImageEncoder`` (``B x 1 x H x W -> (B x E, B x E x h x w)``), eval mode, no gradients.
    """
    from radmi.engines.classify import build_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        classifier = build_classifier(init, mode="linear", encoder=encoder)
    image_encoder = classifier.image_encoder
    image_encoder.requires_grad_(False)
    return image_encoder.eval()


@torch.no_grad()
def extract_features(
    image_encoder: torch.nn.Module,
    dataset,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Features:
    """Run the frozen encoder once over ``dataset`` (in order, no augmentation) and keep the pooled features.

    Args:
        image_encoder: an ``ImageEncoder``; it is put in eval mode here.
        dataset: a split as made by ``radmi.engines.classify.classification_dataset`` (cache, manifest or
            folder): sample dicts with ``image`` ``1 x S x S``, ``labels``, ``label_mask``, ``subject_id`` ...
        batch_size: images per forward pass.
        device: where the encoder runs.

    Returns:
        :class:`Features` with ``features`` ``N x E`` = ``image_encoder(image)[0]`` for each row.
    """
    from radmi.engines.classify import _plain, data_loader, prepare_batch

    image_encoder = image_encoder.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _FIELDS}
    for batch in data_loader(dataset, batch_size=batch_size, shuffle=False):
        image, targets = prepare_batch(batch, device)
        pooled, _ = image_encoder(image)
        n = pooled.shape[0]
        parts["features"].append(pooled.float().cpu().numpy())
        parts["labels"].append(targets["labels"].cpu().numpy())
        parts["label_mask"].append(targets["label_mask"].cpu().numpy())
        parts["edema_severity"].append(targets["edema_severity"].cpu().numpy().astype(np.int64))
        subject = batch.get("subject_id")
        if subject is None:
            subject = np.full(n, "-1")
        elif isinstance(subject, torch.Tensor):
            subject = _plain(subject).cpu().numpy()
        parts["subject_id"].append(np.asarray(subject).astype(str))
        dicom = batch.get("dicom_id")
        parts["dicom_id"].append(np.asarray(dicom if dicom is not None else [""] * n, dtype=str))
    if not parts["features"]:
        raise ValueError("the split has no rows to extract features from")
    return Features(**{name: np.concatenate(values) for name, values in parts.items()})


def extract_splits(
    init: str | Path,
    data: str | Path,
    encoder: Mapping[str, Any] | None = None,
    splits: Sequence[str] = SPLITS,
    image_size: int | None = None,
    uncertain: str = "ignore",
    blank: str = "negative",
    views: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> dict[str, Features]:
    """Features of every split of ``data`` for one encoder init (the whole train split: fractions come later).

    With ``cache_dir``, each split is stored as ``cache_dir/features_<split>.npz`` and read back next time.
    ``image_size`` None: a prepared cache's own size, else 224. The other arguments are those of
    ``classification_dataset`` and :func:`load_probe_encoder`.
    """
    from radmi.data.source import cache_image_size, open_source
    from radmi.engines.classify import classification_dataset

    if image_size is None:
        source = open_source(data)
        image_size = cache_image_size(source.path) if source.is_cache else 224

    out: dict[str, Features] = {}
    missing = []
    for split in splits:
        path = None if cache_dir is None else Path(cache_dir) / FEATURES_FILE.format(split=split)
        if path is not None and path.is_file():
            out[split] = Features.load(path)
        else:
            missing.append(split)
    if missing:
        image_encoder = load_probe_encoder(init, encoder, seed=seed)
        for split in missing:
            dataset = classification_dataset(data, split, image_size, uncertain, blank, views=views)
            out[split] = extract_features(image_encoder, dataset, batch_size, device)
            if cache_dir is not None:
                out[split].save(Path(cache_dir) / FEATURES_FILE.format(split=split))
    return {split: out[split] for split in splits}


def train_subset(
    data: str | Path, fraction: float, seed: int = 0, views: Sequence[str] | None = None
) -> list[str]:
    """``dicom_id`` of the training rows kept at ``fraction`` of the training patients.

    The same draw as the recipe's ``classification_dataset(data, "train", label_fraction=fraction, seed=seed)``:
    :func:`radmi.data.fractions.subsample_label_fraction` on the train split's rows (after the view filter).
    """
    from radmi.data.fractions import subsample_label_fraction
    from radmi.data.source import open_source

    source = open_source(data)
    if source.is_cache:
        from radmi.data.cache import CachedDataset

        table = CachedDataset(source.path, split="train").index
    else:
        table = source.manifest_table()
        table = table[table["split"] == "train"]
    if views is not None and "view" in table.columns:
        table = table[table["view"].isin(list(views))]
    if fraction < 1.0:
        table = subsample_label_fraction(table, fraction, seed=seed, split=None)
    return table["dicom_id"].astype(str).tolist()


# ------------------------------------------------------------------------------------------------ fitting
@dataclass
class FindingProbe:
    """One finding's fitted probe (or why there is none).

    ``status`` is ``"ok"`` or ``"not estimable"`` (then ``reason`` says which class the training rows lack and
    ``model`` is None). ``c_source``: ``validation`` (this finding's validation AUROC chose C), ``macro`` (its
    validation split has one class: the C with the best mean validation AUROC over the other findings) or
    ``default`` (no finding had a usable validation split: C = 1).
    """

    name: str
    status: str
    reason: str = ""
    c: float | None = None
    c_source: str = ""
    validation_auroc: dict[float, float | None] = field(default_factory=dict)
    n_train: int = 0
    n_train_positive: int = 0
    n_iter: int = 0
    converged: bool = True
    model: Any = None

    def summary(self) -> dict[str, Any]:
        """JSON-serializable facts (everything but the fitted model)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "C": self.c,
            "C_source": self.c_source,
            "validation_auroc": {f"{c:g}": v for c, v in self.validation_auroc.items()},
            "n_train": self.n_train,
            "n_train_positive": self.n_train_positive,
            "n_iter": self.n_iter,
            "converged": self.converged,
        }


@dataclass
class LinearProbe:
    """A fitted frozen-feature probe: the scaler, one :class:`FindingProbe` per finding, the edema model."""

    scaler: Any
    findings: list[FindingProbe]
    edema: FindingProbe | None = None
    c_grid: tuple[float, ...] = DEFAULT_C_GRID

    def finding_scores(self, features: np.ndarray) -> np.ndarray:
        """``N x E`` features -> ``N x L`` decision values; NaN columns for findings that are not estimable."""
        z = self.scaler.transform(np.asarray(features, dtype=np.float64))
        scores = np.full((len(z), len(self.findings)), np.nan)
        for j, probe in enumerate(self.findings):
            if probe.model is not None:
                scores[:, j] = probe.model.decision_function(z)
        return scores

    def edema_probabilities(self, features: np.ndarray) -> np.ndarray | None:
        """``N x E`` -> ``N x 4`` severity probabilities (grades unseen in training get 0); None without a model."""
        if self.edema is None or self.edema.model is None:
            return None
        z = self.scaler.transform(np.asarray(features, dtype=np.float64))
        return _four_class_probabilities(self.edema.model, z)


def _four_class_probabilities(model, z: np.ndarray) -> np.ndarray:
    proba = np.zeros((len(z), 4))
    proba[:, model.classes_.astype(int)] = model.predict_proba(z)
    return proba


def _logistic(c: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter)


def _fit(c: float, z: np.ndarray, y: np.ndarray, max_iter: int):
    """Fit one logistic regression; returns (model, iterations, converged)."""
    from sklearn.exceptions import ConvergenceWarning

    model = _logistic(c, max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(z, y)
    n_iter = int(np.max(model.n_iter_))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, n_iter, converged


def _auroc_or_none(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if label_status(y) != OK:
        return None
    return float(roc_auc_score(y, score))


def _pick_c(aurocs: Mapping[float, float | None]) -> float | None:
    """The grid value with the highest validation AUROC (the first, i.e. smallest C, on ties); None if undefined."""
    defined = [(value, c) for c, value in aurocs.items() if value is not None]
    if not defined:
        return None
    best = max(value for value, _ in defined)
    return min(c for value, c in defined if value == best)


def fit_probe(
    train: Features,
    validate: Features,
    label_names: Sequence[str] = CHEXPERT_LABELS,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    edema: bool = True,
    max_iter: int = 2000,
) -> LinearProbe:
    """Standardize, then fit a logistic regression per finding (and for edema severity), C chosen on validation.

    Args:
        train: the labelled training rows (after the label-fraction draw), ``N x E`` features.
        validate: the validation split (chooses C per finding: the highest masked validation AUROC).
        label_names: the L finding names (columns of ``labels``).
        c_grid: inverse regularization strengths tried (L2 penalty, ``LogisticRegression(C=...)``).
        edema: also fit the 4-way severity model when the training rows have a severity.
        max_iter: L-BFGS iteration limit; a fit that hits it is reported ``converged: false``.

    Returns:
        :class:`LinearProbe`.
    """
    from sklearn.preprocessing import StandardScaler

    grid = tuple(sorted(float(c) for c in c_grid))
    if not grid:
        raise ValueError("c_grid must hold at least one value")
    scaler = StandardScaler().fit(np.asarray(train.features, dtype=np.float64))
    z_train = scaler.transform(np.asarray(train.features, dtype=np.float64))
    z_val = scaler.transform(np.asarray(validate.features, dtype=np.float64))

    probes: list[FindingProbe] = []
    fitted: list[dict[float, Any]] = []
    for j, name in enumerate(label_names):
        keep = train.label_mask[:, j] > 0.5
        y = (train.labels[keep, j] > 0.5).astype(int)
        status = label_status(y)
        probe = FindingProbe(name=name, status=OK, n_train=int(keep.sum()), n_train_positive=int(y.sum()))
        models: dict[float, Any] = {}
        if status != OK:
            probe.status, probe.reason = NOT_ESTIMABLE, f"training rows: {status}"
        else:
            val_keep = validate.label_mask[:, j] > 0.5
            y_val = (validate.labels[val_keep, j] > 0.5).astype(int)
            for c in grid:
                model, n_iter, converged = _fit(c, z_train[keep], y, max_iter)
                models[c] = (model, n_iter, converged)
                probe.validation_auroc[c] = _auroc_or_none(
                    y_val, model.decision_function(z_val[val_keep]) if val_keep.any() else np.empty(0)
                )
        probes.append(probe)
        fitted.append(models)

    # C for findings whose validation split cannot rank: the grid value best on average over the others
    macro: dict[float, float | None] = {}
    for c in grid:
        values = [p.validation_auroc[c] for p in probes if p.validation_auroc.get(c) is not None]
        macro[c] = float(np.mean(values)) if values else None
    macro_c = _pick_c(macro)
    for j, (probe, models) in enumerate(zip(probes, fitted, strict=True)):
        if probe.status != OK:
            continue
        c = _pick_c(probe.validation_auroc)
        probe.c_source = "validation"
        if c is None:
            c, probe.c_source = (macro_c, "macro") if macro_c is not None else (1.0, "default")
        if c not in models:  # the default C = 1 may lie outside a custom grid
            keep = train.label_mask[:, j] > 0.5
            models[c] = _fit(c, z_train[keep], (train.labels[keep, j] > 0.5).astype(int), max_iter)
        probe.c = c
        probe.model, probe.n_iter, probe.converged = models[c]

    edema_probe = _fit_edema(train, validate, z_train, z_val, grid, max_iter) if edema else None
    return LinearProbe(scaler=scaler, findings=probes, edema=edema_probe, c_grid=grid)


def _fit_edema(
    train: Features,
    validate: Features,
    z_train: np.ndarray,
    z_val: np.ndarray,
    grid: tuple[float, ...],
    max_iter: int,
) -> FindingProbe | None:
    """Multinomial logistic regression on severity 0..3; C by the mean defined ordinal validation AUROC."""
    present = train.edema_severity != EDEMA_MISSING
    if not present.any():
        return None
    y = train.edema_severity[present].astype(int)
    probe = FindingProbe(name="edema severity", status=OK, n_train=int(present.sum()),
                         n_train_positive=int((y >= 1).sum()))  # fmt: skip
    if len(np.unique(y)) < 2:
        probe.status, probe.reason = NOT_ESTIMABLE, f"training rows hold one severity grade ({int(y[0])})"
        return probe
    val_present = validate.edema_severity != EDEMA_MISSING
    models = {}
    for c in grid:
        models[c] = _fit(c, z_train[present], y, max_iter)
        if not val_present.any():
            probe.validation_auroc[c] = None
            continue
        ordinal = edema_ordinal_aucs(
            validate.edema_severity[val_present], _four_class_probabilities(models[c][0], z_val[val_present]),
            n_bootstrap=0,
        )  # fmt: skip
        values = [e.value for e in ordinal.values() if e.value is not None]
        probe.validation_auroc[c] = float(np.mean(values)) if values else None
    c = _pick_c(probe.validation_auroc)
    probe.c_source = "validation"
    if c is None:
        c = 1.0 if 1.0 in models else grid[len(grid) // 2]
        probe.c_source = "default"
    probe.c = c
    probe.model, probe.n_iter, probe.converged = models[c]
    return probe


# ------------------------------------------------------------------------------------------------ evaluation
def probe_metrics(
    probe: LinearProbe,
    test: Features,
    label_names: Sequence[str] = CHEXPERT_LABELS,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> FindingMetrics:
    """Test AUROC/AUPRC per finding and macro (patient-bootstrap CIs), plus the ordinal edema AUCs.

    Findings that are not estimable keep that status (``value=None``) and stay out of the macro average; the
    bootstrap draws are the same patients for every finding (``finding_metrics`` on the estimable columns).
    """
    names = list(label_names)
    scores = probe.finding_scores(test.features)
    estimable = [j for j, p in enumerate(probe.findings) if p.status == OK]
    groups = np.asarray(test.subject_id).astype(str)
    if (groups == "-1").all():
        groups = np.arange(len(groups)).astype(str)
    if estimable:
        metrics = finding_metrics(
            test.labels[:, estimable], scores[:, estimable], [names[j] for j in estimable],
            test.label_mask[:, estimable], groups, n_bootstrap, seed,
        )  # fmt: skip
    else:
        metrics = finding_metrics(
            np.zeros((len(test), 0)), np.zeros((len(test), 0)), [], None, groups, 0, seed
        )
        metrics.n_bootstrap = n_bootstrap
    auroc, auprc = {}, {}
    for j, name in enumerate(names):
        if name in metrics.auroc:
            auroc[name], auprc[name] = metrics.auroc[name], metrics.auprc[name]
            continue
        keep = test.label_mask[:, j] > 0.5
        n_pos = int((test.labels[keep, j] > 0.5).sum())
        status = f"{NOT_ESTIMABLE} ({probe.findings[j].reason})"
        auroc[name] = Estimate(None, None, None, status, n_pos, int(keep.sum()) - n_pos)
        auprc[name] = Estimate(None, None, None, status, n_pos, int(keep.sum()) - n_pos)
    metrics.auroc, metrics.auprc = auroc, auprc
    if probe.edema is not None:
        if probe.edema.model is not None:
            metrics.edema = edema_ordinal_aucs(
                test.edema_severity, probe.edema_probabilities(test.features), groups, n_bootstrap, seed
            )
        else:
            metrics.edema = {
                name: Estimate(None, None, None, f"{NOT_ESTIMABLE} ({probe.edema.reason})", 0, 0)
                for name in ("0v123", "01v23", "012v3")
            }
    return metrics


@dataclass
class ProbeResult:
    """What :func:`evaluate_probe` returns: the fitted probe, the test metrics and the training-set facts."""

    probe: LinearProbe
    metrics: FindingMetrics
    facts: dict[str, Any]


def evaluate_probe(
    features: Mapping[str, Features],
    train_ids: Sequence[str] | None = None,
    label_names: Sequence[str] = CHEXPERT_LABELS,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    n_bootstrap: int = 1000,
    seed: int = 0,
    edema: bool = True,
    out_dir: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ProbeResult:
    """Fit on ``features["train"]`` (restricted to ``train_ids``), choose C on ``validate``, score ``test``.

    Args:
        features: ``{"train", "validate", "test"}`` -> :class:`Features` (e.g. from :func:`extract_splits`).
        train_ids: the labelled training ``dicom_id`` (:func:`train_subset`); None keeps the whole train split.
        label_names, c_grid, edema: as in :func:`fit_probe`.
        n_bootstrap, seed: test bootstrap draws and their seed.
        out_dir: when given, ``metrics.json``/``metrics.csv``/``report.md`` are written there
            (``radmi.eval.report.write_report``, the same files ``radmi evaluate`` writes), with the probe's
            facts (C per finding, statuses, training counts) under ``"run"``.
        extra: more facts for ``metrics.json``.
    """
    train = features["train"] if train_ids is None else features["train"].select(train_ids)
    if len(train) == 0:
        raise ValueError("no training rows left for the probe")
    probe = fit_probe(train, features["validate"], label_names, c_grid, edema)
    metrics = probe_metrics(probe, features["test"], label_names, n_bootstrap, seed)
    facts = {
        "protocol": "frozen-feature probe: StandardScaler + LogisticRegression(lbfgs) per finding, C on validation",
        "c_grid": list(probe.c_grid),
        "n_train_images": len(train),
        "n_train_patients": int(len(np.unique(train.subject_id))),
        "findings": {p.name: p.summary() for p in probe.findings},
        "edema": None if probe.edema is None else probe.edema.summary(),
        **dict(extra or {}),
    }
    if out_dir is not None:
        from radmi.eval.report import write_report

        write_report(metrics, out_dir, extra=json.loads(json.dumps(facts, default=str)))
    return ProbeResult(probe=probe, metrics=metrics, facts=facts)
