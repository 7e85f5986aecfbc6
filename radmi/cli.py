"""The ``radmi`` command. Each subcommand lives in ``radmi.commands.<module>`` and is imported only when used.

A command module defines ``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int`` (the exit status). Recipes are not defined here: commands that train
or infer run the bundle configs under ``bundles/`` with overrides.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from radmi import __version__
from radmi.errors import RadmiError

# name -> (module under radmi.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole story offline on the CPU: data, pretrain, probe, evaluate, bundle, predict"),
    "demo-data": ("demo_data", "generate a synthetic MIMIC-CXR-layout dataset (DICOM + reports + labels)"),
    "manifest": ("manifest", "build or check a manifest (MIMIC-CXR tree or hospital export)"),
    "prepare": ("prepare", "decode, resize and tokenize a manifest once into a memory-mapped cache"),
    "pretrain": ("pretrain", "image-text pretraining with local MI, global MI or TVDIM"),
    "finetune": ("finetune", "train a finding classifier (linear probe or fine-tuning)"),
    "evaluate": ("evaluate", "AUROC/AUPRC with bootstrap CIs, ordinal edema AUCs, ROC plots"),
    "evaluate-grounding": ("evaluate_grounding", "pointing game and IoU of sentence->region maps on demo data"),
    "benchmark": ("benchmark", "the seed paper's comparison table: inits x linear/fine-tune x label fractions"),
    "explain": ("explain", "draw per-sentence region heat maps over a radiograph"),
    "bundle": ("bundle", "export, package and verify MONAI bundles"),
    "predict": ("predict", "classify DICOMs with a findings bundle"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radmi",
        description="Chest X-ray representation learning by local image-text mutual information, on MONAI.",
    )
    parser.add_argument("--version", action="version", version=f"radmi {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"radmi.commands.{module_name}")
    parser = argparse.ArgumentParser(prog=f"radmi {name}", description=help_text)
    module.configure(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # split the global options from the subcommand and its own arguments
    index = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if index is None:
        args = top.parse_args(argv)
        top.print_help()
        return 0 if args.command is None and not argv else 2
    top_args = top.parse_args(argv[:index])
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(top_args.verbose + 1, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser, module = _command_parser(argv[index])
    args = parser.parse_args(argv[index + 1 :])
    try:
        return int(module.run(args) or 0)
    except RadmiError as err:
        print(f"radmi {argv[index]}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
