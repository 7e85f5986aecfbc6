"""``radmi finetune``: train a finding classifier with the findings bundle recipe
(``bundles/radmi_cxr_findings/configs/train.json``).

Every option becomes an override of the recipe, run by :func:`radmi.bundle.run.run_recipe` (MONAI's
``ConfigWorkflow``, exactly as ``python -m monai.bundle run`` would); the command keeps no defaults of its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radmi.bundle.run import parse_overrides

if TYPE_CHECKING:
    from monai.bundle import ConfigWorkflow

BUNDLE = "radmi_cxr_findings"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="a demo-data or MIMIC-CXR folder, a manifest CSV, or a prepared cache",
    )
    parser.add_argument(
        "--init", help="image encoder start: 'random', a pretraining run directory or an image_encoder.pt"
    )
    parser.add_argument(
        "--mode", choices=("linear", "finetune"), help="linear probe (frozen encoder) or fine-tune all"
    )
    parser.add_argument(
        "--label-fraction", type=float, help="fraction of training patients with labels (0.01, 0.1, 1.0)"
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the label subsample, initialization and batch order"
    )
    parser.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--edema", action="store_true", help="also train the 4-way edema severity head")
    parser.add_argument(
        "--out", required=True, type=Path, help="run directory (models/, tensorboard/, config.json)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe item, e.g. --set batch_size=32 --set image_size=224 (VALUE read as JSON if it parses)",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe overrides the command line asks for (``--set`` last, so it wins)."""
    overrides: dict[str, Any] = {"dataset_dir": str(args.data), "output_dir": str(args.out)}
    optional = {
        "init": args.init,
        "mode": args.mode,
        "label_fraction": args.label_fraction,
        "seed": args.seed,
        "epochs": args.epochs,
    }
    overrides.update({key: value for key, value in optional.items() if value is not None})
    if args.edema:
        overrides["edema"] = True
    overrides.update(parse_overrides(args.set))
    return overrides


def run_recipe(config: str = "train.json", out: str | Path | None = None, **overrides: Any) -> ConfigWorkflow:
    """Run one config of the findings bundle with overrides; returns the finished ``ConfigWorkflow``.

    A shorthand of :func:`radmi.bundle.run.run_recipe` for the findings bundle (``out``: where the executed
    config is written as ``config.json``).
    """
    from radmi.bundle.run import run_recipe as run_bundle_recipe

    return run_bundle_recipe(BUNDLE, config, overrides, out=out)


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.run import load_recipe, run_workflow

    out = Path(args.out)
    workflow = load_recipe(BUNDLE, "train.json", overrides_from_args(args), out=out)
    size = int(workflow.parser.get_parsed_content("image_size"))
    print(f"radmi finetune: training at {size} x {size} px (the recipe's image_size; --set image_size=N to change)")
    run_workflow(workflow)
    print(f"radmi finetune: done; best model (validation macro AUROC) in {out / 'models' / 'model.pt'}")
    print(f"  TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return 0
