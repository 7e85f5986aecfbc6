"""``radmi evaluate RUN_DIR --data ... --split test``: AUROC/AUPRC with patient-bootstrap 95% CIs, ordinal
edema AUCs and ROC curves of a classifier trained by ``radmi finetune``.

Runs ``bundles/radmi_cxr_findings/configs/evaluate.json``. The preprocessing settings (image size, views,
label policies) are taken from the run's own ``config.json`` so the test images are prepared exactly as the
training ones were. Writes ``RUN_DIR/eval/<split>/metrics.json|metrics.csv|report.md|roc.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BUNDLE = "radmi_cxr_findings"
#: Items copied from the training run's config into the evaluation.
INHERITED = ("image_size", "views", "uncertainty_policy", "blank_policy")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run directory written by `radmi finetune`")
    parser.add_argument(
        "--data", required=True, type=Path, help="demo-data/MIMIC-CXR folder, manifest CSV or cache"
    )
    parser.add_argument(
        "--split", default="test", choices=("train", "validate", "test"), help="split to evaluate"
    )
    parser.add_argument("--bootstrap", type=int, help="bootstrap draws for the CIs (recipe: 1000)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override any item of evaluate.json"
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="take expressions from the run's config.json even if radmi did not write it on this machine",
    )


def inherited_settings(run_dir: Path, trust: bool = False) -> dict[str, Any]:
    """The preprocessing items of the run's ``config.json`` (absent ones are left to the recipe).

    They become overrides of the evaluation recipe, where a ``$`` string is evaluated: a run that is not
    trusted (:mod:`radmi.trust`) must hold literal values there, else a one-line :class:`ModelLoadError`.
    """
    from radmi.bundle.runs import require_run
    from radmi.trust import is_literal, require_trusted

    path = require_run(run_dir, "finetune") / "config.json"
    config = json.loads(path.read_text())
    settings = {key: config[key] for key in INHERITED if key in config}
    if not all(is_literal(value) for value in settings.values()):
        require_trusted(run_dir, trust=trust, what="run")
    return settings


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.run import parse_overrides, run_recipe

    run_dir = Path(args.run_dir)
    overrides: dict[str, Any] = {
        **inherited_settings(run_dir, trust=args.trust),
        "run_dir": str(run_dir),
        "dataset_dir": str(args.data),
        "split": args.split,
    }
    if args.bootstrap is not None:
        overrides["n_bootstrap"] = args.bootstrap
    overrides.update(parse_overrides(args.set))
    run_recipe(BUNDLE, "evaluate.json", overrides)
    out = run_dir / "eval" / args.split
    print((out / "report.md").read_text())
    print(f"radmi evaluate: wrote {out}/metrics.json, metrics.csv, report.md, roc.png")
    return 0
