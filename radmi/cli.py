"""The ``radmi`` command. Each subcommand lives in ``radmi.commands.<module>`` and is imported only when used.

A command module defines ``configure(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int`` (the exit status). Recipes are not defined here: commands that train
or infer run the bundle configs under ``bundles/`` with overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from radmi import __version__
from radmi.errors import RadmiError, radmi_cause
from radmi.threads import configure_threads

# name -> (module under radmi.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole story offline on the CPU: data, pretrain, probe, evaluate, bundle, predict"),
    "demo-data": ("demo_data", "generate a synthetic MIMIC-CXR-layout dataset (DICOM + reports + labels)"),
    "manifest": ("manifest", "build or check a manifest (MIMIC-CXR tree or hospital export)"),
    "label": ("label", "CheXpert-14 labels from report text with radmi's rule-based report labeler"),
    "prepare": ("prepare", "decode, resize and tokenize a manifest once into a memory-mapped cache"),
    "pretrain": ("pretrain", "image-text pretraining with local MI, global MI or TVDIM"),
    "finetune": ("finetune", "train a finding classifier (linear probe or fine-tuning)"),
    "evaluate": ("evaluate", "AUROC/AUPRC with bootstrap CIs, ordinal edema AUCs, ROC plots"),
    "evaluate-grounding": ("evaluate_grounding", "pointing game and IoU of sentence->region maps on demo data"),
    "benchmark": ("benchmark", "the seed paper's comparison table: inits x linear/fine-tune x label fractions"),
    "explain": ("explain", "draw per-sentence region heat maps over a radiograph"),
    "zero-shot": ("zero_shot", "finding AUROC from a pretrained run with sentence prompts, no labels"),
    "retrieve": ("retrieve", "image <-> report recall@k of a pretrained run, or the best reports for one image"),
    "bundle": ("bundle", "export, package and verify MONAI bundles"),
    "predict": ("predict", "classify DICOMs with a findings bundle"),
}


#: warnings that radmi's design makes expected; shown with -v
EXPECTED_WARNINGS = (
    # the recipes' StatsHandler is quiet below -v on purpose (progress bars show the loss)
    r".*effective log level of .* is higher than INFO.*",
    # bundle export runs MONAI's checker on a bundle radmi has just written itself
    r".*file integrity is NOT verified.*",
    r".*torch\.jit\.interface.* is deprecated.*",
)


@contextlib.contextmanager
def cli_logging(verbose: int) -> Iterator[None]:
    """Quiet by default: warnings and radmi's own printed lines only; ``-v`` shows every library's INFO log
    (Ignite, MONAI, transformers), ``-vv`` DEBUG. Restores the logging and warning state on exit, so a command
    run in-process (the demo's steps, tests) leaves nothing behind."""
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    previous_disable = logging.root.manager.disable
    previous_verbosity = os.environ.get("TRANSFORMERS_VERBOSITY")
    with warnings.catch_warnings():
        if not verbose:
            # MONAI and Ignite give their loggers explicit INFO levels and handlers, so levels on parents do
            # not reach them; disabling INFO records globally does, and keeps every warning
            logging.disable(logging.INFO)
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported
            for pattern in EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            logging.disable(previous_disable)
            if previous_verbosity is None:
                os.environ.pop("TRANSFORMERS_VERBOSITY", None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radmi",
        description="Chest X-ray representation learning by local image-text mutual information, on MONAI.",
    )
    parser.add_argument("--version", action="version", version=f"radmi {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="show library logs (Ignite, MONAI, transformers); -vv: debug"
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU compute threads (default: RADMI_THREADS, else OMP_NUM_THREADS, else every usable core; waiting "
        "threads sleep instead of spinning, see docs/performance.md)",
    )
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


def user_error(err: BaseException) -> RadmiError | None:
    """The error a user can act on, as a radmi error: a radmi error anywhere in ``err``'s chain of causes (MONAI's
    config runner and DataLoader workers wrap them), or an OS error on a named file (missing, permission, disk
    full). None for anything else, which is a bug and keeps its traceback."""
    cause = radmi_cause(err)
    if cause is not None:
        return cause
    seen = set()
    while err is not None and id(err) not in seen:  # an OS error MONAI or a DataLoader worker wrapped
        if isinstance(err, OSError) and err.strerror:
            return RadmiError(err.strerror, path=err.filename)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


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
    parser, module = _command_parser(argv[index])
    args = parser.parse_args(argv[index + 1 :])
    try:
        configure_threads(top_args.threads)
        with cli_logging(top_args.verbose):
            return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"radmi {argv[index]}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        error = user_error(err)
        if error is None or top_args.debug:
            raise
        print(f"radmi {argv[index]}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
