"""Zero-shot finding classification from a pretrained run: sentence prompts, no labels.

For each CheXpert finding there are positive prompts ("There is a right pleural effusion.") and negative ones
("No pleural effusion."), read from a JSON file (the package's ``prompts.json`` by default, :func:`load_prompts`).
An image's score for a finding is

    score(x, f) = max_{p in positive(f)} T(x, p) - max_{n in negative(f)} T(x, n)

where ``T(x, p)`` is the score the run's trained objective gives the pair (image x, a report made of the single
sentence p), exactly as in pretraining's held-out retrieval
(:func:`radmi.engines.pretrain_metrics.report_scores`, i.e. the loss's ``pair_scores``), with no new parameter:

- **local MI**: the critic scores every region of the image against the prompt sentence and the objective's own
  aggregate (``max`` over regions by default; ``mean`` / ``lse`` for those runs) reduces them;
- **global MI**: the critic scores the pooled image vector against the prompt's report-level vector;
- **TVDIM**: its inter-modality critic on the same two vectors.

The score is a log-odds of the two-way choice between the best positive and the best negative prompt (its
sigmoid is the softmax over that pair, CheXzero's form); it is not calibrated. AUROC only reads its order.

Images are prepared as pretraining's held-out validation sees them: resized (letterbox) to the run's
``image_size`` (the cache's images, or ``radmi.data.pipeline.image_transforms`` for files), then the centre
``crop_size`` crop of ``radmi.transforms.batch`` (``RandBatchAugmentd(mode="eval")``).

Python API (a notebook)::

    from radmi.eval.zero_shot import ZeroShotClassifier
    zs = ZeroShotClassifier("runs/local_mi")                # default prompts; prompts="my_prompts.json"
    table = zs.score_files(["a.dcm", "b.dcm"])             # one row per file, one column per finding
    scores = zs(images)                                      # B x 1 x S x S tensor -> B x F scores

``evaluate_zero_shot(run_dir, data, split, out_dir)`` scores a split of a cache or manifest and writes
``metrics.json``, ``metrics.csv``, ``report.md`` (per-finding AUROC with patient-bootstrap CIs), ``roc.png`` and
``scores.csv`` (``radmi zero-shot``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from radmi.data.labels import CHEXPERT_LABELS
from radmi.errors import RadmiError

logger = logging.getLogger(__name__)

#: The default prompts shipped with radmi (package data).
PROMPTS_FILE = Path(__file__).with_name("prompts.json")
#: What the score is, for metrics.json and the reports.
SCORE_DEFINITION = (
    "best positive prompt's critic score minus best negative prompt's (each prompt scored as a one-sentence "
    "report by the objective's pair_scores, as in pretraining's held-out retrieval)"
)


# ------------------------------------------------------------------------------------------------ prompts
@dataclass(frozen=True)
class Prompts:
    """The prompt sentences of F findings, flattened.

    Attributes:
        findings: the F finding names (CheXpert names, in ``CHEXPERT_LABELS`` order).
        sentences: the P prompt sentences (each finding's positives, then its negatives, finding by finding).
        positive: ``F x P`` bool, ``positive[f, p]``: sentence p is a positive prompt of finding f.
        negative: ``F x P`` bool, likewise for negative prompts.
        source: where the prompts came from (a file path, or ``"<dict>"``).
    """

    findings: list[str]
    sentences: list[str]
    positive: np.ndarray
    negative: np.ndarray
    source: str

    def counts(self) -> dict[str, dict[str, int]]:
        """``{finding: {"positive": n, "negative": m}}``."""
        return {
            name: {"positive": int(self.positive[f].sum()), "negative": int(self.negative[f].sum())}
            for f, name in enumerate(self.findings)
        }


def load_prompts(prompts: str | PathLike | Mapping[str, Any] | Prompts | None = None) -> Prompts:
    """Read and check prompts: ``{finding: {"positive": [sentences], "negative": [sentences]}}``.

    Args:
        prompts: a JSON file, a dict of that layout, a :class:`Prompts`, or None (the shipped
            :data:`PROMPTS_FILE`). Keys starting with ``_`` are comments. Any subset of the 14 CheXpert findings,
            each with at least one non-empty positive and one non-empty negative sentence.

    Raises:
        RadmiError: naming the file: not JSON, not that layout, an unknown finding, an empty list.
    """
    if isinstance(prompts, Prompts):
        return prompts
    path = PROMPTS_FILE if prompts is None else None
    if isinstance(prompts, (str, PathLike)):
        path = Path(prompts).expanduser()
    if path is not None:
        if not path.is_file():
            raise RadmiError("no such prompts file", path=path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RadmiError(f"not a valid JSON prompts file: {err}", path=path) from err
        source = str(path)
    else:
        spec, source = prompts, "<dict>"

    def bad(reason: str) -> RadmiError:
        return RadmiError(reason, path=source if path is not None else None)

    if not isinstance(spec, Mapping):
        raise bad('prompts must be a JSON object {finding: {"positive": [...], "negative": [...]}}')
    entries = {str(k): v for k, v in spec.items() if not str(k).startswith("_")}
    unknown = [name for name in entries if name not in CHEXPERT_LABELS]
    if unknown:
        raise bad(f"unknown finding(s) {unknown}; use the CheXpert names: {', '.join(CHEXPERT_LABELS)}")
    if not entries:
        raise bad("no finding has prompts")
    findings = [name for name in CHEXPERT_LABELS if name in entries]
    sentences: list[str] = []
    owner: list[tuple[int, bool]] = []
    for f, name in enumerate(findings):
        entry = entries[name]
        if not isinstance(entry, Mapping):
            raise bad(f'{name}: expected {{"positive": [...], "negative": [...]}}')
        for side in ("positive", "negative"):
            items = entry.get(side)
            if isinstance(items, str):
                items = [items]
            if not isinstance(items, list) or not items:
                raise bad(f"{name}: {side!r} must be a non-empty list of sentences")
            for item in items:
                if not isinstance(item, str) or not item.strip():
                    raise bad(f"{name}: {side!r} holds an empty or non-text prompt")
                sentences.append(item.strip())
                owner.append((f, side == "positive"))
    positive = np.zeros((len(findings), len(sentences)), dtype=bool)
    negative = np.zeros_like(positive)
    for p, (f, is_positive) in enumerate(owner):
        (positive if is_positive else negative)[f, p] = True
    return Prompts(findings, sentences, positive, negative, source)


# ------------------------------------------------------------------------------------------------ features
def load_run(run: Any, device: str | torch.device = "cpu", trust: bool = False) -> nn.Module:
    """A :class:`radmi.eval.explain.PretrainedRun` from a run directory (checked with ``require_run``; ``trust``
    as in ``PretrainedRun``), or ``run`` itself when it already is one (or any object with the same
    attributes)."""
    if isinstance(run, (str, PathLike)):
        from radmi.bundle.runs import require_run
        from radmi.eval.explain import PretrainedRun

        return PretrainedRun(require_run(run, "pretrain"), device=device, trust=trust)
    return run


def run_settings(run_dir: str | PathLike, trust: bool = False) -> dict[str, Any]:
    """``image_size``, ``crop_size``, ``max_length`` and ``text_model`` of a run's ``config.json`` (the keys it
    has), read without loading any model. The config is code: it is evaluated only for a trusted run
    (:func:`radmi.eval.explain.run_config_settings`); an untrusted one must hold literal values."""
    if not (Path(run_dir) / "config.json").is_file():
        return {}
    from radmi.eval.explain import run_config_settings

    settings, _ = run_config_settings(
        run_dir, trust=trust, keys=("image_size", "crop_size", "max_length", "text_model")
    )
    return settings


def run_crop_size(run: Any) -> int | None:
    """The centre crop of the run's held-out validation: ``run.crop_size``, else ``crop_size`` of the run's
    ``config.json`` (None when neither exists: no crop)."""
    crop = getattr(run, "crop_size", None)
    if crop is not None:
        return int(crop)
    run_dir = getattr(run, "run_dir", None)
    crop = None if run_dir is None else run_settings(run_dir, trust=getattr(run, "trusted", False)).get("crop_size")
    return None if crop is None else int(crop)


def _plain(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _run_device(run: Any) -> torch.device:
    """Where the run's weights are now (after any ``.to()``), else its ``device`` attribute."""
    encoder = getattr(run, "image_encoder", None)
    if encoder is not None:
        return next(encoder.parameters()).device
    return torch.device(getattr(run, "device", "cpu"))


@torch.no_grad()
def image_features(run: Any, images: torch.Tensor, crop_size: int | None = None) -> dict[str, torch.Tensor]:
    """The image half of the pretraining network's output for a batch.

    Args:
        run: a :class:`~radmi.eval.explain.PretrainedRun` (``image_encoder``, ``objective``).
        images: ``B x 1 x S x S`` in [0, 1] (S = the run's ``image_size``), or already ``crop x crop``.
        crop_size: centre crop applied first (:func:`radmi.transforms.batch.centre_crop`); None: none.

    Returns:
        The keys among ``image_global`` (B x E) and ``image_local`` (B x E x h x w) that the objective reads.
    """
    from radmi.engines.pretrain_metrics import IMAGE_KEYS
    from radmi.transforms.batch import centre_crop

    x = _plain(images).float().to(_run_device(run))
    if x.ndim == 3:
        x = x[None]
    if crop_size is not None and tuple(x.shape[-2:]) != (crop_size, crop_size):
        x = centre_crop(x, int(crop_size))
    image_global, image_local = run.image_encoder(x)
    out = {"image_global": image_global, "image_local": image_local}
    reads = set(run.objective.loss.reads)
    return {key: out[key] for key in IMAGE_KEYS if key in reads}


@torch.no_grad()
def text_features(
    run: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The text half of the pretraining network's output for ``B x T`` report tokens: the keys among
    ``text_sentences`` (B x K x E), ``sentence_mask`` (B x K) and ``text_global`` (B x E) that the objective
    reads; only the text passes those need are run (as ``ImageTextModel(outputs=loss.reads)`` does)."""
    from radmi.models.multimodal import REPORT_OUTPUTS, SENTENCE_OUTPUTS, TEXT_OUTPUTS

    reads = set(run.objective.loss.reads)
    device = _run_device(run)
    text = run.text_encoder(
        _plain(input_ids).long().to(device),
        _plain(attention_mask).long().to(device),
        _plain(sentence_ids).long().to(device),
        report=any(key in reads for key in REPORT_OUTPUTS),
        sentences=any(key in reads for key in SENTENCE_OUTPUTS),
    )
    named = {TEXT_OUTPUTS[key]: value for key, value in text.items() if key in TEXT_OUTPUTS}
    return {key: value for key, value in named.items() if key in reads}


@torch.no_grad()
def encode_prompts(run: Any, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each prompt as a one-sentence report: text features with ``P`` rows and one sentence slot
    (``text_sentences`` P x 1 x E, ``sentence_mask`` P x 1; ``text_global`` P x E), tokenized as the run's
    reports are (``TokenizeReport`` with its tokenizer, ``max_length`` and ``max_sentences``)."""
    from radmi.transforms.text import TokenizeReport

    tokenize = TokenizeReport(run.tokenizer, int(run.max_length), int(run.max_sentences))
    tokens = [tokenize([sentence]) for sentence in sentences]
    ids, mask, sentence_ids = (torch.stack([t[i] for t in tokens]) for i in range(3))
    # prompts are short: drop the padding columns no prompt reaches (masked out anyway; 5x less work at T = 64)
    length = max(int(mask.sum(1).max()), 1)
    ids, mask, sentence_ids = ids[:, :length], mask[:, :length], sentence_ids[:, :length]
    features = text_features(run, ids, mask, sentence_ids)
    if "text_sentences" in features:  # slot 0 holds the prompt; the other slots are empty
        features["text_sentences"] = features["text_sentences"][:, :1]
        features["sentence_mask"] = features["sentence_mask"][:, :1]
    return features


def best_prompt_margin(prompt_scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``B x P`` prompt scores -> ``B x F``: max over each finding's positive prompts minus max over its negative
    prompts (``positive``/``negative``: ``F x P`` bool)."""
    scores = prompt_scores.float().unsqueeze(1)  # B x 1 x P
    low = torch.finfo(scores.dtype).min
    best_positive = scores.masked_fill(~positive.to(scores.device), low).amax(-1)
    best_negative = scores.masked_fill(~negative.to(scores.device), low).amax(-1)
    return best_positive - best_negative


class ZeroShotClassifier(nn.Module):
    """A pretrained run plus prompts as a finding classifier: ``B x 1 x S x S`` images -> ``B x F`` scores.

    Args:
        run: a ``radmi pretrain`` run directory, or a loaded :class:`~radmi.eval.explain.PretrainedRun`.
        prompts: a prompts JSON file, a dict, or None for the shipped defaults (:func:`load_prompts`).
        device: where a run loaded from a directory runs.

    The prompt features are computed once here. ``forward(images)`` returns the finding scores
    (:func:`best_prompt_margin` of :meth:`prompt_scores`); ``finding_names`` names the F columns.
    """

    def __init__(
        self,
        run: str | PathLike | nn.Module,
        prompts: str | PathLike | Mapping[str, Any] | Prompts | None = None,
        device: str | torch.device = "cpu",
        trust: bool = False,
    ) -> None:
        super().__init__()
        self.prompts = load_prompts(prompts)
        self.run = load_run(run, device, trust=trust)
        self.image_size = int(self.run.image_size)
        self.crop_size = run_crop_size(self.run)
        self.kind = str(self.run.objective.loss.kind)
        features = encode_prompts(self.run, self.prompts.sentences)
        self._prompt_keys = sorted(features)
        for key, value in features.items():
            self.register_buffer(f"prompt_{key}", value.detach().clone(), persistent=False)
        self.register_buffer("positive", torch.from_numpy(self.prompts.positive), persistent=False)
        self.register_buffer("negative", torch.from_numpy(self.prompts.negative), persistent=False)
        self.eval()

    @property
    def finding_names(self) -> list[str]:
        return list(self.prompts.findings)

    @property
    def prompt_features(self) -> dict[str, torch.Tensor]:
        return {key: getattr(self, f"prompt_{key}") for key in self._prompt_keys}

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`image_features` of the run with its validation crop."""
        return image_features(self.run, images, self.crop_size)

    @torch.no_grad()
    def prompt_scores(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``B x P`` critic scores of image features (:meth:`image_features`) against every prompt."""
        from radmi.engines.pretrain_metrics import report_scores

        return report_scores(self.run.objective, dict(features), self.prompt_features)

    @torch.no_grad()
    def finding_scores(self, prompt_scores: torch.Tensor) -> torch.Tensor:
        """``B x P`` prompt scores -> ``B x F`` finding scores."""
        return best_prompt_margin(prompt_scores, self.positive, self.negative)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B x 1 x S x S`` in [0, 1] -> ``B x F`` zero-shot scores (log-odds, uncalibrated)."""
        if images.shape[0] == 0:
            return images.new_zeros((0, len(self.finding_names)))
        return self.finding_scores(self.prompt_scores(self.image_features(images)))

    @torch.no_grad()
    def score_images(self, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """``N x 1 x S x S`` -> ``N x F`` float32 scores, in batches."""
        parts = [self(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, len(self.finding_names)), np.float32)

    def score_files(self, paths: Iterable[str | PathLike], batch_size: int = 16):
        """Score image files (DICOM, or PNG/JPG) read and resized as the run's cache was prepared.

        Returns:
            a ``pandas.DataFrame``: ``path``, then one column of scores per finding.
        """
        import pandas as pd

        from radmi.data.pipeline import image_transforms

        load = image_transforms(self.image_size)
        paths = [str(p) for p in paths]
        rows = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            images = []
            for path in chunk:
                sample = {"image_path": path}
                for transform in load:
                    sample = transform(sample)
                images.append(_plain(sample["image"]).float())
            rows.append(self.score_images(torch.stack(images), batch_size))
        scores = np.concatenate(rows) if rows else np.zeros((0, len(self.finding_names)))
        table = pd.DataFrame(scores, columns=self.finding_names)
        table.insert(0, "path", paths)
        return table


# ------------------------------------------------------------------------------------------------ a split
@dataclass
class ZeroShotScores:
    """Zero-shot scores of one split with what the metrics need.

    Attributes:
        findings: F names; scores: ``N x F``; prompt_scores: ``N x P``; labels, label_mask: ``N x F`` (the
        data's label policy); subject_id, dicom_id: ``N`` str.
    """

    findings: list[str]
    scores: np.ndarray
    prompt_scores: np.ndarray
    labels: np.ndarray
    label_mask: np.ndarray
    subject_id: np.ndarray
    dicom_id: np.ndarray


@torch.no_grad()
def zero_shot_scores(
    classifier: ZeroShotClassifier, data: str | PathLike, split: str = "test", batch_size: int = 64
) -> ZeroShotScores:
    """Score every image of ``split`` of ``data`` (a prepared cache, a manifest or a MIMIC-CXR-layout folder,
    read by ``radmi.engines.classify.classification_dataset`` at the run's ``image_size``)."""
    from radmi.engines.classify import _plain as plain_id
    from radmi.engines.classify import classification_dataset, data_loader, prepare_batch

    columns = [CHEXPERT_LABELS.index(name) for name in classifier.finding_names]
    dataset = classification_dataset(data, split, classifier.image_size)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("scores", "prompts", "labels", "mask", "subject", "dicom")}
    for batch in data_loader(dataset, batch_size=batch_size, shuffle=False):
        image, targets = prepare_batch(batch, "cpu")
        prompt_scores = classifier.prompt_scores(classifier.image_features(image))
        n = prompt_scores.shape[0]
        parts["prompts"].append(prompt_scores.float().cpu().numpy())
        parts["scores"].append(classifier.finding_scores(prompt_scores).float().cpu().numpy())
        parts["labels"].append(targets["labels"][:, columns].cpu().numpy())
        parts["mask"].append(targets["label_mask"][:, columns].cpu().numpy())
        subject = batch.get("subject_id")
        subject = np.full(n, "-1") if subject is None else np.asarray(
            plain_id(subject).cpu().numpy() if isinstance(subject, torch.Tensor) else subject
        )
        parts["subject"].append(subject.astype(str))
        dicom = batch.get("dicom_id")
        parts["dicom"].append(np.asarray(dicom if dicom is not None else [""] * n, dtype=str))
    if not parts["scores"]:
        raise RadmiError(f"the {split} split has no images to score", path=data)
    joined = {key: np.concatenate(value) for key, value in parts.items()}
    return ZeroShotScores(
        classifier.finding_names, joined["scores"], joined["prompts"], joined["labels"], joined["mask"],
        joined["subject"], joined["dicom"],
    )  # fmt: skip


def _groups(subject_id: np.ndarray) -> np.ndarray:
    """Patients for the bootstrap; unknown ids (``-1`` everywhere) make each image its own patient."""
    subject = np.asarray(subject_id).astype(str)
    return np.arange(len(subject)) if (subject == "-1").all() else subject


def evaluate_zero_shot(
    run: str | PathLike | nn.Module | ZeroShotClassifier,
    data: str | PathLike,
    split: str = "test",
    out_dir: str | PathLike | None = None,
    prompts: str | PathLike | Mapping[str, Any] | Prompts | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    trust: bool = False,
):
    """Zero-shot AUROC per finding on a split, with patient-bootstrap 95% CIs (``radmi zero-shot``).

    Args:
        run: a pretraining run directory, a loaded run, or a :class:`ZeroShotClassifier` (then ``prompts`` is
            ignored).
        data: a prepared cache, a manifest CSV or a MIMIC-CXR-layout folder.
        split: the split scored.
        out_dir: where ``metrics.json``, ``metrics.csv``, ``report.md``, ``roc.png`` and ``scores.csv`` go
            (None: nothing is written).
        prompts: see :func:`load_prompts`.
        n_bootstrap, seed: bootstrap draws (patients resampled) and their seed.
        batch_size, device: scoring batch size and device.
        trust: evaluate the run's config even if the run is not trusted (:mod:`radmi.trust`).

    Returns:
        ``(metrics, scores)``: :class:`radmi.eval.metrics.FindingMetrics` and :class:`ZeroShotScores`.
    """
    from radmi.eval.metrics import finding_metrics

    classifier = run if isinstance(run, ZeroShotClassifier) else ZeroShotClassifier(run, prompts, device, trust=trust)
    result = zero_shot_scores(classifier, data, split, batch_size)
    metrics = finding_metrics(
        result.labels, result.scores, result.findings, result.label_mask, _groups(result.subject_id),
        n_bootstrap, seed,
    )  # fmt: skip
    if out_dir is not None:
        write_zero_shot(metrics, result, classifier, out_dir, data=data, split=split, seed=seed)
    return metrics, result


def run_facts(classifier: ZeroShotClassifier) -> dict[str, Any]:
    """What the scores were made from, for ``metrics.json`` (no report text)."""
    loss = classifier.run.objective.loss
    facts: dict[str, Any] = {
        "run_dir": str(getattr(classifier.run, "run_dir", "")),
        "objective": classifier.kind,
        "image_size": classifier.image_size,
        "crop_size": classifier.crop_size,
        "prompts": classifier.prompts.source,
        "prompt_counts": classifier.prompts.counts(),
        "score": SCORE_DEFINITION,
    }
    if getattr(loss, "aggregate", None) is not None:
        facts["aggregate"] = loss.aggregate
    return facts


def write_zero_shot(
    metrics,
    result: ZeroShotScores,
    classifier: ZeroShotClassifier,
    out_dir: str | PathLike,
    data: str | PathLike | None = None,
    split: str = "test",
    seed: int = 0,
) -> dict[str, Path]:
    """``metrics.json|csv`` and ``report.md`` (the ``radmi evaluate`` formats), ``roc.png`` and ``scores.csv``
    (``dicom_id`` and one score column per finding)."""
    import pandas as pd

    from radmi.eval.plots import plot_roc_curves
    from radmi.eval.report import markdown_table, write_report

    out = Path(out_dir)
    extra = {**run_facts(classifier), "data": None if data is None else str(data), "split": split,
             "bootstrap_seed": seed}  # fmt: skip
    paths = write_report(metrics, out, extra)
    name = Path(extra["run_dir"]).name or "run"
    title = f"Zero-shot finding classification: {classifier.kind} MI run {name}, split {split}"
    aggregate = f" ({extra['aggregate']} over regions)" if "aggregate" in extra else ""
    note = (
        f"\nNo labels were used. Score of an image for a finding: the {SCORE_DEFINITION}; critic of the "
        f"{classifier.kind} objective{aggregate}. Prompts: `{classifier.prompts.source}` "
        f"({len(classifier.prompts.sentences)} sentences for {len(classifier.prompts.findings)} findings).\n"
    )
    paths["markdown"].write_text(markdown_table(metrics, title) + note)
    table = pd.DataFrame(result.scores, columns=result.findings)
    table.insert(0, "dicom_id", result.dicom_id)
    paths["scores"] = out / "scores.csv"
    table.to_csv(paths["scores"], index=False, float_format="%.6f")
    paths["roc"] = plot_roc_curves(
        result.labels, result.scores, result.findings, out / "roc.png", label_mask=result.label_mask
    )
    return paths
