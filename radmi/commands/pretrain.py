"""``radmi pretrain``: run the pretraining bundle recipe (``bundles/radmi_cxr_pretrain/configs/train.json``).

The command keeps no defaults of its own: every option becomes an override of the recipe, which MONAI's
``ConfigWorkflow`` then runs exactly as ``python -m monai.bundle run`` would. For several GPUs or nodes,
launch it with ``torchrun`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from radmi.errors import TrainingError, radmi_cause

logger = logging.getLogger(__name__)

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
        "--objective", choices=("local", "global", "tvdim"), help="MI objective (recipe: local)"
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


def parse_override(item: str) -> tuple[str, Any]:
    """``"lr_image=1e-4"`` -> ``("lr_image", 0.0001)``; a value that is not JSON stays a string."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TrainingError(f"--set expects KEY=VALUE, got {item!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe overrides the command line asks for (``--set`` last, so it wins)."""
    overrides: dict[str, Any] = {"dataset_dir": str(args.data), "output_dir": str(args.out)}
    optional = {"objective": args.objective, "epochs": args.epochs, "amp": args.amp}
    overrides.update({key: value for key, value in optional.items() if value is not None})
    if args.resume:
        overrides["resume"] = True
    if args.no_progress:
        overrides["progress_bar"] = False
    overrides.update(parse_override(item) for item in args.set)
    return overrides


def run(args: argparse.Namespace) -> int:
    from monai.bundle import ConfigWorkflow

    from radmi.bundle.paths import bundle_config
    from radmi.engines.distributed import is_rank_zero

    if args.tracking == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError as err:
            raise TrainingError("--tracking mlflow needs the mlflow package: pip install mlflow") from err
    config = bundle_config(BUNDLE)
    overrides = overrides_from_args(args)
    if args.tracking == "mlflow":
        # MONAI derives its default path by appending to the output_dir *expression*; a plain path breaks it
        overrides.setdefault("save_execute_config", str(Path(args.out) / "config.json"))
    # MONAI warns when a bundle run gets no logging file; radmi's CLI has configured logging already
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    workflow = ConfigWorkflow(
        config_file=str(config),
        meta_file=str(config.with_name("metadata.json")),
        logging_file=False,
        tracking=args.tracking,
        workflow_type="train",
        **overrides,
    )
    workflow.initialize()
    out = Path(args.out)
    if is_rank_zero():
        out.mkdir(parents=True, exist_ok=True)
        workflow.parser.export_config_file(workflow.parser.get(), str(out / "config.json"), indent=2)
        print(f"radmi pretrain: recipe {config}")
        print(f"  checkpoints: {out / 'checkpoints'}")
        print(f"  TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
        if args.tracking == "mlflow":
            uri = workflow.parser.get_parsed_content("tracking_uri")
            print(f"  MLflow: mlflow ui --backend-store-uri {uri}")
    try:
        workflow.run()
    except RuntimeError as err:
        # MONAI's config runner wraps errors of the run expression; show the radmi error itself
        cause = radmi_cause(err)
        if cause is None:
            raise
        raise cause from err
    finally:
        workflow.finalize()
    if is_rank_zero():
        print(f"radmi pretrain: done; encoders and critic in {out / 'models'}")
    return 0
