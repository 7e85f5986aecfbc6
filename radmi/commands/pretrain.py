"""``radmi pretrain``: run the pretraining bundle recipe (``bundles/radmi_cxr_pretrain/configs/train.json``).

The command keeps no defaults of its own: every option becomes an override of the recipe, which
:func:`radmi.bundle.run.load_recipe` hands to MONAI's ``ConfigWorkflow``, run exactly as
``python -m monai.bundle run`` would. For several GPUs or nodes,
launch it with ``torchrun`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from radmi.bundle.run import parse_override, parse_overrides

__all__ = ["BUNDLE", "configure", "overrides_from_args", "parse_override", "run"]

BUNDLE = "radmi_cxr_pretrain"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="a demo-data or MIMIC-CXR folder, a manifest CSV, or a cache made by `radmi prepare`",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run directory (checkpoints, models, TensorBoard)"
    )
    parser.add_argument(
        "--objective",
        help="MI objective: an entry of the recipe's 'objectives' (shipped: local, global, tvdim; recipe: local)",
    )
    parser.add_argument("--epochs", type=int, help="number of epochs")
    parser.add_argument("--amp", choices=("bf16", "fp16", "none"), help="mixed precision on CUDA")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument(
        "--tracking",
        choices=("mlflow",),
        help="also log to MLflow (MONAI's bundle tracking; pip install mlflow)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe item, e.g. --set batch_size=64 --set backbone=resnet18 "
        "(VALUE is read as JSON when it parses, else as a string; nested ids use '#')",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe overrides the command line asks for (``--set`` last, so it wins)."""
    overrides: dict[str, Any] = {"dataset_dir": str(args.data), "output_dir": str(args.out)}
    optional = {"objective": args.objective, "epochs": args.epochs, "amp": args.amp}
    overrides.update({key: value for key, value in optional.items() if value is not None})
    if args.resume:
        overrides["resume"] = True
    if args.no_progress:
        overrides["progress_bar"] = False
    overrides.update(parse_overrides(args.set))
    return overrides


def run(args: argparse.Namespace) -> int:
    from radmi.bundle.run import load_recipe, run_workflow
    from radmi.engines.distributed import is_rank_zero

    out = Path(args.out)
    workflow = load_recipe(BUNDLE, "train.json", overrides_from_args(args), out=out, tracking=args.tracking)
    if is_rank_zero():
        print(f"radmi pretrain: recipe {workflow.config_root_path / 'train.json'}")
        print(f"  checkpoints: {out / 'checkpoints'}")
        print(f"  TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
        if args.tracking == "mlflow":
            uri = workflow.parser.get_parsed_content("tracking_uri")
            print(f"  MLflow: mlflow ui --backend-store-uri {uri}")
    run_workflow(workflow)
    if is_rank_zero():
        print(f"radmi pretrain: done; encoders and critic in {out / 'models'}")
    return 0
