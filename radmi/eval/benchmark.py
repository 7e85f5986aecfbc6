"""The seed paper's comparison table, end to end: ``radmi benchmark --data DIR --out DIR [--preset NAME]``.

Steps (every training goes through the bundle recipes, with overrides only):

1. data: the demo dataset at ``--data`` (generated there with the preset's size when the folder is absent);
   one prepared cache (``OUT/cache``) serves every run;
2. pretraining (``radmi_cxr_pretrain``): global MI, local MI (max over regions), local MI (mean), the
   paper-faithful local MI (one sampled sentence, concat-MLP critic, DV), TVDIM; the held-out validation of each
   run (MI bound, report recall@k, chance) is read back from its TensorBoard log;
3. classification on the test split, for each init (plus random) x label fractions x seeds:

   - ``probe``: the frozen-feature linear probe (:mod:`radmi.eval.probe`): pooled features extracted once per
     init (``OUT/features/<init>/``), standardized, one L-BFGS logistic regression per finding with C chosen on
     the validation split, and the 4-way edema severity model scored by the three ordinal AUCs;
   - ``finetune``: the findings recipe (``radmi_cxr_findings``) training everything, then its evaluation;
   - ``linear`` (not in the default presets): the recipe's engine-trained linear head on the frozen encoder;

   macro and per-finding AUROC with patient-bootstrap CIs;
4. grounding on the test split for the local-MI rows and TVDIM, with the uniform/centre chance levels that
   stand in for global MI (no region map);
5. zero-shot finding AUROC (:mod:`radmi.eval.zero_shot`, shipped prompts, no labels) and image <-> report
   retrieval (:mod:`radmi.eval.retrieval`) on the test split for every pretrained init (``OUT/zero_shot/``,
   ``OUT/retrieval/``): a "zero-shot" column in the macro table, a per-finding zero-shot table, a retrieval table;
6. ``OUT/results.md``: the tables (macro, per finding, edema, pretraining validation, grounding), the command,
   the data, the hardware and the wall time; ``OUT/results.json`` and ``OUT/classification.csv``.

Across seeds the tables show the mean AUROC and a 95% t-interval over seeds; with one seed they show that
run's bootstrap CI. The seeds vary the label subsample (and the fine-tuning); each init's encoder is one
pretraining run (seed 0), and the random init's frozen probe uses one random encoder (seed 0).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Table rows: name -> pretraining overrides (None: random init, no pretraining).
INITS: dict[str, dict[str, Any] | None] = {
    "random": None,
    "global MI": {"objective": "global"},
    "local MI (max)": {"objective": "local", "aggregate": "max"},
    "local MI (mean)": {"objective": "local", "aggregate": "mean"},
    # the seed paper's own setting: one sentence sampled per report, the concat-MLP critic, the DV bound. The
    # authors' critic is 1536 -> 1024 -> 512 -> 1 on 768-d features; at the presets' E = 384 the same shape is
    # 768 -> 512 -> 256 -> 1 (the recipe's default hidden sizes would make one held-out validation of 216
    # studies cost ~25 CPU-minutes instead of ~8: every region x sentence x report pair goes through the MLP)
    "local MI (paper)": {
        "objective": "local",
        "sentence_mode": "sample",
        "critic": "concat_mlp",
        "critic_kwargs": {"hidden": [512, 256]},
        "estimator": "dv",
    },
    "TVDIM": {"objective": "tvdim"},
    # the ablation of issue 13: local MI as it was before sentences were encoded alone and identical texts masked
    "local MI (report context; no text mask)": {
        "objective": "local",
        "aggregate": "max",
        "sentence_context": "report",
        "mask_identical_text": False,
    },
    # one change at a time against "local MI (max)" (issue 13's ablations): each sentence still encoded alone but
    # identical texts not masked; masked but sentences pooled from the whole-report pass; and a 4 x 4 region
    # map (local stride 32 instead of 16 at the standard preset's 112 px crop)
    "local MI (isolated; no text mask)": {"objective": "local", "aggregate": "max", "mask_identical_text": False},
    "local MI (report context; text mask)": {"objective": "local", "aggregate": "max", "sentence_context": "report"},
    "local MI (4 x 4 regions)": {"objective": "local", "aggregate": "max", "local_stride": 32},
    # the same recipe trained twice as long (the standard preset's 3 epochs are 147 iterations)
    "local MI (max; 6 epochs)": {"objective": "local", "aggregate": "max", "epochs": 6, "val_every": 6},
}
#: the rows a preset runs when ``--inits`` is not given; the ablation rows run only when named
DEFAULT_INITS = ("random", "global MI", "local MI (max)", "local MI (mean)", "local MI (paper)", "TVDIM")
#: rows scored for grounding: region x sentence maps, and global MI's region x report map
GROUNDED = (
    "global MI",
    "local MI (max)",
    "local MI (mean)",
    "local MI (paper)",
    "TVDIM",
    "local MI (report context; no text mask)",
    "local MI (isolated; no text mask)",
    "local MI (report context; text mask)",
    "local MI (4 x 4 regions)",
    "local MI (max; 6 epochs)",
)
#: findings whose boxes are small (the issue's "above the centre map" target)
SMALL_FINDINGS = ("Lung Lesion", "Consolidation", "Atelectasis", "Lung Opacity")
#: ``probe``: frozen-feature scikit-learn probe; ``finetune``: recipe fine-tuning; ``linear``: recipe linear head.
ALL_MODES = ("probe", "linear", "finetune")
MODES = ("probe", "finetune")
FRACTIONS = (0.01, 0.1, 1.0)
MODE_TITLES = {"probe": "linear probe", "linear": "linear head (engine)", "finetune": "finetune"}


@dataclass
class Preset:
    """Sizes of one benchmark scale (CPU-friendly; the recipe defaults are for GPUs and MIMIC-CXR)."""

    studies: int
    image_size: int
    crop_size: int
    pretrain_epochs: int
    finetune_epochs: int
    seeds: int
    n_bootstrap: int
    backbone: str = "resnet18"
    embed_dim: int = 384
    batch_size: int = 32
    max_length: int = 64
    grounding_images: int | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)
    #: classification modes run (see :data:`ALL_MODES`) and the label fractions of each
    modes: tuple[str, ...] = MODES
    fractions: tuple[float, ...] = FRACTIONS
    #: label fractions of the fine-tuning rows (None: ``fractions``); fine-tuning is the slow part on a CPU
    finetune_fractions: tuple[float, ...] | None = None
    #: at most this many seeds for the fine-tuning rows (None: as many as the other rows)
    finetune_seeds: int | None = None
    #: the table rows run when none are named (``--inits``)
    inits: tuple[str, ...] = DEFAULT_INITS

    def mode_fractions(self, mode: str) -> tuple[float, ...]:
        """The label fractions run for ``mode``."""
        if mode == "finetune" and self.finetune_fractions is not None:
            return tuple(self.finetune_fractions)
        return tuple(self.fractions)

    def mode_seeds(self, mode: str, seeds: int) -> int:
        """How many of the ``seeds`` classification seeds ``mode`` runs."""
        if mode == "finetune" and self.finetune_seeds is not None:
            return min(seeds, self.finetune_seeds)
        return seeds


#: pretraining epochs of the ``standard`` preset (49 iterations of 32 studies each at 2,000 studies): the
#: demo-scale local-MI run of docs/training.md reached recall@5 = 4.2 x chance after 2 epochs, not after 1;
#: a third fits the hour once each text pass runs only when the objective reads it (docs/results.md)
STANDARD_PRETRAIN_EPOCHS = 3
#: the ``standard`` preset's default rows: the seed paper's comparison, within the hour on 2 idle cores (each
#: pretrained row costs 11-13 minutes there); add others into the same ``--out`` with ``--inits``
STANDARD_INITS = ("random", "global MI", "local MI (max)")

PRESETS = {
    # a first result in <= 20 minutes on 2 CPU cores (measured 19.6 min on a shared machine: docs/results.md)
    "quick": Preset(studies=300, image_size=64, crop_size=56, pretrain_epochs=3, finetune_epochs=4, seeds=1,
                    n_bootstrap=200, grounding_images=40),
    # the smallest end-to-end pass, for tests of the runner itself (its figures mean nothing)
    "smoke": Preset(studies=40, image_size=32, crop_size=28, pretrain_epochs=1, finetune_epochs=1, seeds=1,
                    n_bootstrap=20, batch_size=8, max_length=48, grounding_images=4),
    # the issue-13 preset (docs/evaluation.md, section 3): 2,000 studies at 128 px, crop 112 at local stride 16
    # = a 7 x 7 region map; held-out validation after the last pretraining epoch only; probes at 1/10/100% with
    # 3 seeds; fine-tuning only at 10% of the labels, 1 seed, 5 epochs (CPU time: fine-tuning costs ~40x a probe)
    "standard": Preset(studies=2000, image_size=128, crop_size=112, pretrain_epochs=STANDARD_PRETRAIN_EPOCHS,
                       finetune_epochs=5, seeds=3, n_bootstrap=1000, grounding_images=None,
                       finetune_fractions=(0.1,), finetune_seeds=1, inits=STANDARD_INITS,
                       pretrain={"local_stride": 16, "val_every": STANDARD_PRETRAIN_EPOCHS}),
    "full": Preset(studies=2000, image_size=128, crop_size=112, pretrain_epochs=15, finetune_epochs=20, seeds=3,
                   n_bootstrap=1000),
}  # fmt: skip


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def prepare_data(data: Path, out: Path, preset: Preset, seed: int = 0) -> Path:
    """Generate the demo data if needed, build its manifest and one cache (``OUT/manifest.csv``, ``OUT/cache``,
    by :mod:`radmi.data.source`); returns the cache folder."""
    from radmi.data.demo.generate import generate
    from radmi.data.source import resolve_cache

    if not data.exists() or (data.is_dir() and not any(data.iterdir())):  # a manifest CSV is used as it is
        logger.info("generating %d demo studies in %s", preset.studies, data)
        generate(data, studies=preset.studies, seed=seed, size=max(96, 2 * preset.image_size), progress=True)
    # classification rows need no reports (e.g. CheXpert); the pretraining recipe refuses such data itself
    return resolve_cache(
        data, out, image_size=preset.image_size, max_length=preset.max_length, workers=1, reports_required=False
    )


def pretrain(name: str, overrides: dict[str, Any], cache: Path, out: Path, preset: Preset, seed: int) -> Path:
    """Run the pretraining recipe for one init; returns its run directory (reused when already complete)."""
    from radmi.bundle.run import run_recipe

    run_dir = out / "pretrain" / _slug(name)
    if (run_dir / "models" / "critic.pt").is_file():
        return run_dir
    settings = {
        "dataset_dir": str(cache), "output_dir": str(run_dir), "seed": seed, "epochs": preset.pretrain_epochs,
        "backbone": preset.backbone, "embed_dim": preset.embed_dim, "image_size": preset.image_size,
        "crop_size": preset.crop_size, "batch_size": preset.batch_size, "val_batch_size": preset.batch_size,
        "max_length": preset.max_length, "num_workers": 0, "prepare_workers": 1, "amp": "none",
        "channels_last": False, "progress_bar": False, "warmup_iterations": 10, **preset.pretrain, **overrides,
    }  # fmt: skip
    run_recipe("radmi_cxr_pretrain", "train.json", settings, out=run_dir)
    return run_dir


def classify(
    init: str, mode: str, fraction: float, seed: int, cache: Path, run_dir: Path, preset: Preset
) -> dict:
    """Train (findings recipe) and evaluate on the test split; returns the ``metrics.json`` content."""
    from radmi.bundle.run import run_recipe

    metrics = run_dir / "eval" / "test" / "metrics.json"
    if not metrics.is_file():
        common = {"dataset_dir": str(cache), "image_size": preset.image_size}
        train = {
            "output_dir": str(run_dir), "init": init, "mode": mode, "label_fraction": fraction, "seed": seed,
            "epochs": preset.finetune_epochs, "batch_size": preset.batch_size, "patience": 3,
            "encoder": {"backbone": preset.backbone, "embed_dim": preset.embed_dim, "local_stride": 16}, **common,
        }  # fmt: skip
        run_recipe("radmi_cxr_findings", "train.json", train, out=run_dir)
        evaluate = {"run_dir": str(run_dir), "split": "test", "n_bootstrap": preset.n_bootstrap, "seed": seed}
        run_recipe("radmi_cxr_findings", "evaluate.json", {**evaluate, **common})
    return json.loads(metrics.read_text())


def probe(name: str, init: str, fraction: float, seed: int, cache: Path, out: Path, preset: Preset) -> dict:
    """Frozen-feature linear probe of one init at one label fraction and seed (:mod:`radmi.eval.probe`).

    The features of every split are extracted once per init into ``OUT/features/<init>/`` and reused; the
    metrics go to ``OUT/classify/<init>/probe_<fraction>_seed<seed>/eval/test/`` in the ``metrics.json`` format
    of ``radmi evaluate`` (with the chosen C per finding under ``"run"``). Returns that ``metrics.json`` content.
    """
    from radmi.eval.probe import evaluate_probe, extract_splits, train_subset

    run_dir = out / "classify" / _slug(name) / f"probe_{fraction:g}_seed{seed}"
    metrics = run_dir / "eval" / "test" / "metrics.json"
    if not metrics.is_file():
        encoder = {"backbone": preset.backbone, "embed_dim": preset.embed_dim, "local_stride": 16}
        features = extract_splits(
            init, cache, encoder=encoder, image_size=preset.image_size, seed=0,
            cache_dir=out / "features" / _slug(name),
        )  # fmt: skip
        evaluate_probe(
            features, train_subset(cache, fraction, seed), n_bootstrap=preset.n_bootstrap, seed=seed,
            out_dir=metrics.parent, extra={"init": init, "label_fraction": fraction, "seed": seed},
        )  # fmt: skip
    return json.loads(metrics.read_text())


def zero_shot(name: str, run_dir: Path, cache: Path, out: Path, preset: Preset) -> dict:
    """Zero-shot finding AUROC of one pretrained init on the test split (:mod:`radmi.eval.zero_shot`, the shipped
    prompts, no labels); ``OUT/zero_shot/<init>/test/metrics.json`` (reused when present), returned."""
    from radmi.eval.zero_shot import evaluate_zero_shot

    metrics = out / "zero_shot" / _slug(name) / "test" / "metrics.json"
    if not metrics.is_file():
        evaluate_zero_shot(run_dir, cache, "test", metrics.parent, n_bootstrap=preset.n_bootstrap)
    return json.loads(metrics.read_text())


def retrieval(name: str, run_dir: Path, cache: Path, out: Path, preset: Preset) -> dict:
    """Image <-> report recall@1/5/10 of one pretrained init on the test split (:mod:`radmi.eval.retrieval`);
    ``OUT/retrieval/<init>/test/retrieval.json`` (reused when present), returned."""
    from radmi.eval.retrieval import evaluate_retrieval

    path = out / "retrieval" / _slug(name) / "test" / "retrieval.json"
    if not path.is_file():
        evaluate_retrieval(run_dir, cache, "test", path.parent, n_bootstrap=preset.n_bootstrap)
    return json.loads(path.read_text())


def _estimate_cell(est: dict | None) -> str:
    """``0.612 (0.55-0.67)`` of a ``metrics.json`` estimate, or its status."""
    if not est:
        return "-"
    if est.get("value") is None:
        return str(est.get("status", "-"))
    if est.get("ci_low") is None:
        return f"{est['value']:.3f}"
    return f"{est['value']:.3f} ({est['ci_low']:.3f}-{est['ci_high']:.3f})"


def retrieval_table_markdown(retrieval_results: dict[str, dict]) -> str:
    """The retrieval table: one row per init, recall@1/5/10 both ways with patient-bootstrap CIs, and chance."""
    lines = [
        "## Image-report retrieval on the test split",
        "",
        "Every test image scored against every distinct test report with the run's own critic (as in pretraining's "
        "held-out retrieval); reports with identical text are one gallery entry. Recall@k with the patient-bootstrap "
        "95% CI; chance@k is the recall of a random ranking (`radmi retrieve`, docs/evaluation.md).",
        "",
        "| init | images / reports | image->report R@1 | R@5 | R@10 | report->image R@1 | R@5 | R@10 | chance@1 / @5 / @10 (image->report) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, metrics in retrieval_results.items():
        cells = []
        for direction in ("image_to_report", "report_to_image"):
            for k in (1, 5, 10):
                entry = metrics.get(direction, {}).get(f"recall_at_{k}")
                cells.append(_estimate_cell(entry))
        chance = " / ".join(
            f"{metrics['image_to_report'][f'recall_at_{k}']['chance']:.3f}"
            for k in (1, 5, 10) if f"recall_at_{k}" in metrics.get("image_to_report", {})
        )  # fmt: skip
        lines.append(f"| {name} | {metrics['n_images']} / {metrics['n_reports']} | " + " | ".join(cells)
                     + f" | {chance} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def classification_row(name: str, mode: str, fraction: float, seed: int, metrics: dict) -> dict[str, Any]:
    """One row of ``classification.csv`` / ``results.json``: macro AUROC + CI, per-finding AUROC, edema AUCs.

    Per-finding and edema entries are ``auroc:<name>`` / ``edema:<task>`` (the value, or None when the finding
    could not be scored) with ``..._ci_low``/``..._ci_high``/``..._status`` beside them.
    """
    macro = metrics["macro_auroc"] or {}
    row: dict[str, Any] = {"init": name, "mode": mode, "fraction": fraction, "seed": seed,
                           "macro_auroc": macro.get("value"), "ci_low": macro.get("ci_low"),
                           "ci_high": macro.get("ci_high")}  # fmt: skip
    for prefix, block in (("auroc", metrics.get("auroc") or {}), ("edema", metrics.get("edema") or {})):
        for key, est in block.items():
            row[f"{prefix}:{key}"] = est["value"]
            row[f"{prefix}:{key}_ci_low"] = est["ci_low"]
            row[f"{prefix}:{key}_ci_high"] = est["ci_high"]
            row[f"{prefix}:{key}_status"] = est["status"]
    return row


def pretrain_validation(run_dir: Path) -> dict[str, float]:
    """The last held-out validation of a pretraining run, from its TensorBoard log.

    Returns ``{"epoch": ..., "val_mi_nats": ..., "recall_at_1": ..., "recall_at_5": ..., "recall_at_10": ...}``
    (whatever scalars the log holds; empty when there is no log).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, float] = {}
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            if tag.startswith("val_") or tag.startswith("recall_at_"):
                last = accumulator.Scalars(tag)[-1]
                out[tag] = float(last.value)
                out["epoch"] = max(out.get("epoch", 0), int(last.step))
    return out


def select_inits(names: str | list[str] | None, default: tuple[str, ...] = DEFAULT_INITS) -> list[str]:
    """The table rows to run: a comma list (or list) of row names or their slugs; None = ``default``."""
    if names is None:
        return list(default)
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [n.strip() for n in names]
    by_slug = {_slug(name): name for name in INITS}
    chosen = []
    for item in filter(None, items):
        name = item if item in INITS else by_slug.get(_slug(item))
        if name is None:
            raise ValueError(f"unknown init {item!r}; choose from {', '.join(INITS)} (or their slugs: "
                             f"{', '.join(by_slug)})")  # fmt: skip
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError("no init selected")
    return chosen


def _mean_ci(values: list[float], single_ci: tuple[float | None, float | None]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        low, high = single_ci
        return f"{values[0]:.3f}" + ("" if low is None else f" ({low:.3f}-{high:.3f})")
    from scipy import stats

    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return f"{mean:.3f} ± {half:.3f}"


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores visible, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )


def _cell(part: pd.DataFrame, column: str) -> str:
    """Mean (± 95% t-interval over seeds), or the single run's value with its bootstrap CI, or its status."""
    if column not in part.columns or part.empty:
        return "-"
    values = [float(v) for v in part[column] if v is not None and not pd.isna(v)]
    if not values:
        status = part.get(f"{column}_status")
        return "-" if status is None or status.isna().all() else str(status.dropna().iloc[0])
    low, high = (
        (f"{column}_ci_low", f"{column}_ci_high") if column != "macro_auroc" else ("ci_low", "ci_high")
    )
    ci = (part[low].iloc[0], part[high].iloc[0]) if len(part) == 1 and low in part.columns else (None, None)
    ci = (None, None) if any(c is None or pd.isna(c) for c in ci) else ci
    return _mean_ci(values, ci)


def _columns(table: pd.DataFrame) -> list[tuple[str, float]]:
    """(mode, fraction) pairs present in the table, modes in :data:`ALL_MODES` order."""
    pairs = {(m, float(f)) for m, f in zip(table["mode"], table["fraction"], strict=True)}
    return sorted(pairs, key=lambda p: (ALL_MODES.index(p[0]) if p[0] in ALL_MODES else 99, p[1]))


def results_markdown(
    table: pd.DataFrame,
    grounding: pd.DataFrame,
    facts: dict[str, Any],
    pretraining: dict[str, dict[str, float]] | None = None,
    per_finding_grounding: dict[str, str] | None = None,
    specificity: dict[str, str] | None = None,
    zero_shot: dict[str, dict] | None = None,
    retrieval: dict[str, dict] | None = None,
) -> str:
    """``results.md``: macro AUROC (init x mode x fraction), per-finding AUROC, edema ordinal AUCs, pretraining
    validation, grounding, and how it was made.

    Args:
        table: one row per (init, mode, fraction, seed), as :func:`classification_row` makes them.
        grounding: the grounding rows (model, boxes, pointing, iou).
        facts: command, data, hardware, seeds, wall_minutes.
        pretraining: init -> :func:`pretrain_validation` of its run (None: no pretraining table).
        zero_shot: init -> the zero-shot ``metrics.json`` of its run (:func:`zero_shot`): a "zero-shot" column in
            the macro table and a per-finding table (None or empty: no column).
        retrieval: init -> :func:`retrieval` of its run: the retrieval table (None or empty: no table).
    """
    from radmi.data.labels import CHEXPERT_LABELS

    inits = [name for name in INITS if name in set(table["init"])] if len(table) else []
    columns = _columns(table) if len(table) else []
    spread = (
        "± is the 95% t-interval over seeds."
        if facts["seeds"] > 1
        else "in brackets the patient-bootstrap 95% CI."
    )
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{facts['command']}`",
        "",
        f"Data: {facts['data']}",
        "",
        f"Hardware: {facts['hardware']}. Wall time: {facts['wall_minutes']:.1f} minutes.",
        "",
        "## Finding classification: test macro AUROC",
        "",
        f"Mean over {facts['seeds']} seed(s); {spread} Columns: the frozen-feature linear probe (scikit-learn "
        "logistic regression per finding, C chosen on validation), the recipe's linear head, or fine-tuning, at a "
        "fraction of the training patients' labels.",
        "",
        "| image encoder init | " + " | ".join(f"{MODE_TITLES.get(m, m)} {f:.0%}" for m, f in columns)
        + (" | zero-shot (no labels)" if zero_shot else "") + " |",
        "|---|" + "---|" * (len(columns) + (1 if zero_shot else 0)),
    ]
    if zero_shot:
        lines[lines.index("## Finding classification: test macro AUROC") + 2] += (
            " The zero-shot column uses no label at all: each finding's best positive prompt against its best "
            "negative prompt, scored by the pretrained critic (`radmi zero-shot`); the random init has no text "
            "model, hence no entry."
        )

    def part(init: str, mode: str, fraction: float) -> pd.DataFrame:
        return table[(table["init"] == init) & (table["mode"] == mode) & (table["fraction"] == fraction)]

    for init in inits:
        zero_shot_cell = ""
        if zero_shot:
            zero_shot_cell = " | " + (_estimate_cell(zero_shot[init].get("macro_auroc")) if init in zero_shot else "-")
        lines.append(
            f"| {init} | " + " | ".join(_cell(part(init, m, f), "macro_auroc") for m, f in columns)
            + zero_shot_cell + " |"
        )

    findings = [name for name in CHEXPERT_LABELS if f"auroc:{name}" in table.columns]
    if findings:
        lines += ["", "## Per-finding test AUROC", "",
                  f"One table per column of the macro table; {spread} A finding with no positives (or no negatives) "
                  "among its scored test entries, or one the probe could not fit (a single class in the labelled "
                  "training rows), shows that status instead of a number.", ""]  # fmt: skip
        for mode, fraction in columns:
            lines += [f"### {MODE_TITLES.get(mode, mode)}, {fraction:.0%} of the labels", "",
                      "| image encoder init | " + " | ".join(findings) + " |",
                      "|---|" + "---|" * len(findings)]  # fmt: skip
            for init in inits:
                cells = [_cell(part(init, mode, fraction), f"auroc:{name}") for name in findings]
                lines.append(f"| {init} | " + " | ".join(cells) + " |")
            lines.append("")
        if zero_shot:
            lines += ["### zero-shot (no labels)", "",
                      "| image encoder init | " + " | ".join(findings) + " |",
                      "|---|" + "---|" * len(findings)]  # fmt: skip
            for init in (name for name in inits if name in zero_shot):
                cells = [_estimate_cell(zero_shot[init].get("auroc", {}).get(name)) for name in findings]
                lines.append(f"| {init} | " + " | ".join(cells) + " |")
            lines.append("")
    edema_tasks = [t for t in ("0v123", "01v23", "012v3") if f"edema:{t}" in table.columns]
    # columns whose runs scored edema at all (a value or a status such as "no positives"): the probe rows
    edema_columns = [(m, f) for m, f in columns if any(
        not pd.isna(v)
        for v in table.loc[(table["mode"] == m) & (table["fraction"] == f), f"edema:{edema_tasks[0]}_status"]
    )] if edema_tasks else []  # fmt: skip
    if edema_columns:
        lines += ["", "## Pulmonary edema severity: ordinal test AUROC", "",
                  "A 4-way (severity 0-3) multinomial logistic regression on the frozen features, scored as the seed "
                  "paper does: 0 vs 123, 01 vs 23, 012 vs 3 (the score for severity >= k is the summed probability "
                  f"of the grades >= k). {spread}", "",
                  "| image encoder init | " + " | ".join(f"{MODE_TITLES.get(m, m)} {f:.0%}: {t}"
                                                      for m, f in edema_columns for t in edema_tasks) + " |",
                  "|---|" + "---|" * (len(edema_columns) * len(edema_tasks))]  # fmt: skip
        for init in inits:
            cells = [_cell(part(init, m, f), f"edema:{t}") for m, f in edema_columns for t in edema_tasks]
            lines.append(f"| {init} | " + " | ".join(cells) + " |")
    if pretraining:
        lines += ["", "## Pretraining: held-out validation after the last epoch", "",
                  "Each image of the validation split is scored against every validation report with the run's own "
                  "critic; recall@k is the fraction whose own report ranks in the top k. Chance recall@k = k / N.",
                  "", "| init | epoch | MI bound (nats) | recall@1 | recall@5 | recall@10 | chance recall@5 | recall@5 / chance |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        n_val = facts.get("n_validation")
        for name, values in pretraining.items():
            chance = min(5, n_val) / n_val if n_val else None

            def fmt(key: str, values: dict[str, float] = values) -> str:
                return "-" if key not in values else f"{values[key]:.3f}"

            ratio = (
                "-"
                if chance is None or "recall_at_5" not in values
                else f"{values['recall_at_5'] / chance:.1f}"
            )
            lines.append(f"| {name} | {int(values.get('epoch', 0))} | {fmt('val_mi_nats')} | {fmt('recall_at_1')} | "
                         f"{fmt('recall_at_5')} | {fmt('recall_at_10')} | "
                         f"{'-' if chance is None else f'{chance:.3f}'} | {ratio} |")  # fmt: skip
    if retrieval:
        lines += ["", retrieval_table_markdown(retrieval).rstrip("\n")]
    lines += [
        "",
        "## Grounding on the test split (sentence -> region maps vs ground-truth boxes)",
        "",
        "Pointing game (argmax region within the box, tolerance 15 px at a 224 px input, scaled to the input size) and IoU of the top-10% regions with the "
        "box; 95% CIs from the patient bootstrap. Local MI and TVDIM are scored with each finding's own sentence "
        "map, global MI with its region-to-report map (one map for every finding of the image).",
        "",
        "| model | boxes | pointing | top-10% IoU |",
        "|---|---:|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['boxes']} | {r['pointing']} | {r['iou']} |"
        for r in grounding.to_dict("records")
    ]
    for extra in (per_finding_grounding or {}, specificity or {}):
        lines += ["", *(text.rstrip("\n") + "\n" for text in extra.values())]
    return "\n".join(lines) + "\n"


def per_finding_grounding_markdown(name: str, summary: pd.DataFrame) -> str:
    """Per-finding pointing of one model against both chance maps (small findings marked)."""
    lines = [
        f"#### Grounding per finding: {name}",
        "",
        "| finding | boxes | pointing | uniform map | centre map |",
        "|---|---:|---|---|---|",
    ]
    for label in dict.fromkeys(summary["label"]):
        part = summary[summary["label"] == label]
        n = int(part["n"].iloc[0])
        mark = " (small)" if label in SMALL_FINDINGS else ""
        cells = [_grounding_cell(summary, score, label) for score in ("pointing", "uniform_pointing", "centre_pointing")]
        lines.append(f"| {label}{mark} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _split_size(cache: Path, split: str) -> int | None:
    """Rows of one split of the prepared cache (None when it cannot be read)."""
    try:
        from radmi.data.cache import CachedDataset

        return len(CachedDataset(cache, split=split))
    except Exception:  # a missing or foreign cache only loses the chance column of a table
        return None


def _grounding_cell(summary: pd.DataFrame, score: str, label: str = "overall") -> str:
    row = summary[(summary["label"] == label) & (summary["score"] == score)].iloc[0]
    if np.isnan(row["mean"]):
        return "-"
    return f"{row['mean']:.3f} ({row['ci_low']:.3f}-{row['ci_high']:.3f})"


def run_benchmark(
    data: Path,
    out: Path,
    preset: str = "full",
    seeds: int | None = None,
    argv: list[str] | None = None,
    inits: str | list[str] | None = None,
) -> Path:
    """Run everything (see the module docstring); returns ``OUT/results.md``. Finished steps are reused.

    Args:
        data: the demo-data folder (generated when absent).
        out: the benchmark folder.
        preset: a name in :data:`PRESETS`.
        seeds: classification seeds (default: the preset's).
        argv: the command line, for ``results.md``.
        inits: the table rows to run (:func:`select_inits`: comma list of names or slugs); None = the
            preset's ``inits``.
    """
    from radmi.eval.explain import PretrainedRun
    from radmi.eval.grounding import (
        grounding_pairs,
        specificity_markdown,
        summarize_grounding,
        summarize_specificity,
    )

    start = time.perf_counter()
    preset_name = preset
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    selected = select_inits(inits, default=preset.inits)
    n_seeds = preset.seeds if seeds is None else seeds
    out.mkdir(parents=True, exist_ok=True)
    cache = prepare_data(data, out, preset)
    inits: dict[str, str] = {}
    pretraining: dict[str, dict[str, float]] = {}
    for name in selected:
        overrides = INITS[name]
        if overrides is None:
            inits[name] = "random"
            continue
        run_dir = pretrain(name, overrides, cache, out, preset, seed=0)
        inits[name] = str(run_dir)
        pretraining[name] = pretrain_validation(run_dir)
    rows = []
    for name, init in inits.items():
        for mode in preset.modes:
            for fraction in preset.mode_fractions(mode):
                for seed in range(preset.mode_seeds(mode, n_seeds)):
                    if mode == "probe":
                        metrics = probe(name, init, fraction, seed, cache, out, preset)
                    else:
                        run_dir = out / "classify" / _slug(name) / f"{mode}_{fraction:g}_seed{seed}"
                        metrics = classify(init, mode, fraction, seed, cache, run_dir, preset)
                    rows.append(classification_row(name, mode, fraction, seed, metrics))
    table = pd.DataFrame(rows)
    table.to_csv(out / "classification.csv", index=False)
    zero_shot_results: dict[str, dict] = {}
    retrieval_results: dict[str, dict] = {}
    for name, init in inits.items():
        if init != "random":  # a pretrained run: its critic scores prompts and reports
            zero_shot_results[name] = zero_shot(name, Path(init), cache, out, preset)
            retrieval_results[name] = retrieval(name, Path(init), cache, out, preset)
    grounding_rows = []
    per_finding: dict[str, str] = {}
    specificity: dict[str, str] = {}
    specificity_rows = []
    chance = None
    for name in (g for g in GROUNDED if g in inits):
        run = PretrainedRun(inits[name])
        pairs, counts = grounding_pairs(run, data, "test", max_images=preset.grounding_images)
        pairs.to_csv(out / f"grounding_pairs_{_slug(name)}.csv", index=False)
        summary = summarize_grounding(pairs, n_bootstrap=preset.n_bootstrap)
        summary.to_csv(out / f"grounding_{_slug(name)}.csv", index=False)
        grounding_rows.append({"model": name, "boxes": counts["boxes"], "pointing": _grounding_cell(summary, "pointing"), "iou": _grounding_cell(summary, "iou")})  # fmt: skip
        per_finding[name] = per_finding_grounding_markdown(name, summary)
        if run.has_region_maps:
            spec = summarize_specificity(pairs, n_bootstrap=preset.n_bootstrap)
            spec.to_csv(out / f"specificity_{_slug(name)}.csv", index=False)
            specificity[name] = specificity_markdown(spec, title=f"Sentence specificity: {name}")
            specificity_rows += [{"model": name, **r} for r in spec.to_dict("records")]
        chance = summary if chance is None else chance  # the first row's boxes, as its count
    if chance is not None:
        for baseline in ("uniform", "centre"):
            grounding_rows.append({"model": f"chance ({baseline} map)", "boxes": grounding_rows[0]["boxes"],
                                   "pointing": _grounding_cell(chance, f"{baseline}_pointing"),
                                   "iou": _grounding_cell(chance, f"{baseline}_iou")})  # fmt: skip
    facts = {
        "command": "radmi benchmark " + " ".join(shlex.quote(a) for a in (argv or sys.argv[2:])),
        "data": f"synthetic demo data at {data} ({preset.studies} studies requested; images prepared at "
        f"{preset.image_size} px), test split; encoder {preset.backbone}, E = {preset.embed_dim}",
        "hardware": hardware(),
        "seeds": n_seeds,
        "preset": preset_name,
        "inits": list(inits),
        "n_validation": _split_size(cache, "validate"),
        "wall_minutes": (time.perf_counter() - start) / 60,
    }
    text = results_markdown(
        table, pd.DataFrame(grounding_rows), facts, pretraining, per_finding_grounding=per_finding,
        specificity=specificity, zero_shot=zero_shot_results, retrieval=retrieval_results,
    )  # fmt: skip
    path = out / "results.md"
    path.write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {
                "facts": facts,
                "classification": rows,
                "pretraining": pretraining,
                "grounding": grounding_rows,
                "specificity": specificity_rows,
                "zero_shot": zero_shot_results,
                "retrieval": retrieval_results,
            },
            indent=2,
            default=str,
        )
    )
    return path
