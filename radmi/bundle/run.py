"""The one way radmi runs a bundle recipe: ``radmi pretrain``, ``finetune``, ``evaluate`` and ``benchmark`` use it.

>>> from radmi.bundle.run import run_recipe
>>> run_recipe("radmi_cxr_findings", "train.json", {"dataset_dir": "demo", "output_dir": "run"}, out="run")

:func:`run_recipe` (or :func:`load_recipe` then :func:`run_workflow`, for a caller that prints between the two):

1. finds the config (a shipped bundle name, a bundle folder or a config file);
2. renames deprecated override keys (:data:`RENAMED_KEYS`, with a ``FutureWarning``);
3. builds MONAI's ``ConfigWorkflow`` with the overrides, exactly as ``python -m monai.bundle run`` would, and
   initializes it;
4. on rank 0 only, writes the executed config (recipe + overrides) to ``out/config.json`` and lists its SHA256 in
   the local trust file (:mod:`radmi.trust`), so radmi's own later commands may evaluate it;
5. runs and finalizes it; a radmi error that MONAI wrapped (``RuntimeError: Failed to instantiate ...``) is
   re-raised as itself, so the CLI prints radmi's one-line message instead of a MONAI traceback.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radmi.errors import BundleError, TrainingError, radmi_cause
from radmi.trust import record_trusted

if TYPE_CHECKING:
    from monai.bundle import ConfigWorkflow

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_FILE",
    "RENAMED_KEYS",
    "load_recipe",
    "parse_override",
    "parse_overrides",
    "recipe_config",
    "rename_deprecated_keys",
    "run_recipe",
    "run_workflow",
]

#: Name of the executed config written into a run directory.
CONFIG_FILE = "config.json"
#: Old recipe keys -> their current names. The findings recipe said ``max_epochs``/``val_interval`` while the
#: pretraining recipe said ``epochs``/``val_every``; both now use the latter. Old keys given as overrides are
#: renamed with a ``FutureWarning``.
RENAMED_KEYS: dict[str, str] = {"max_epochs": "epochs", "val_interval": "val_every"}


# ---- overrides ------------------------------------------------------------------------------------------
def parse_override(item: str) -> tuple[str, Any]:
    """``"lr_image=1e-4"`` -> ``("lr_image", 0.0001)``; a value that is not JSON stays a string."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TrainingError(f"--set expects KEY=VALUE, got {item!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--set`` items -> an overrides dict (a later item wins over an earlier one)."""
    return dict(parse_override(item) for item in items)


def rename_deprecated_keys(overrides: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with each old key of :data:`RENAMED_KEYS` renamed, where the recipe has the new key only.

    Order is kept, so a later override still wins: ``{"epochs": 3, "max_epochs": 5}`` gives ``{"epochs": 5}``.
    Warns (``FutureWarning``) once per renamed key.
    """
    renamed: dict[str, Any] = {}
    for key, value in overrides.items():
        new = RENAMED_KEYS.get(key)
        if new is not None and new in config and key not in config:
            warnings.warn(
                f"recipe key {key!r} is deprecated; use {new!r} (the value was applied to {new!r})",
                FutureWarning,
                stacklevel=3,
            )
            renamed.pop(new, None)  # re-insert so the later value wins and the order is kept
            key = new
        renamed[key] = value
    return renamed


# ---- the workflow ---------------------------------------------------------------------------------------
def recipe_config(recipe: str | Path, config: str = "train.json") -> Path:
    """The config file of ``recipe``: a shipped bundle name, a bundle folder, or a config file itself.

    Raises:
        BundleError: no such bundle or config file.
    """
    path = Path(recipe)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / "configs" / config
        if not candidate.is_file():
            raise BundleError(f"the bundle folder has no configs/{config}", path=path)
        return candidate
    from radmi.bundle.paths import bundle_config

    return bundle_config(str(recipe), config)


def _unwrapped(err: BaseException) -> BaseException:
    """The radmi error inside ``err`` when MONAI wrapped one, else ``err`` itself."""
    cause = radmi_cause(err)
    return err if cause is None else cause


def load_recipe(
    recipe: str | Path,
    config: str = "train.json",
    overrides: Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    tracking: str | dict | None = None,
    workflow_type: str | None = None,
) -> ConfigWorkflow:
    """Build and initialize the ``ConfigWorkflow`` of one recipe with ``overrides``; do not run it yet.

    Args:
        recipe: a shipped bundle name (``"radmi_cxr_pretrain"``), a bundle folder, or a config file path.
        config: the config file inside the bundle's ``configs/`` (ignored when ``recipe`` is a file).
        overrides: recipe items to replace (MONAI ids; nested ids use ``#``). Deprecated keys are renamed.
        out: when given, rank 0 writes the executed config to ``out/config.json`` (the folder is created).
        tracking: MONAI bundle tracking, e.g. ``"mlflow"`` (needs the mlflow package).
        workflow_type: MONAI's workflow type; default ``"train"`` for ``train.*`` configs, else ``"infer"``.

    Raises:
        BundleError: the recipe cannot be found. A radmi error raised while initializing is raised as itself.
    """
    from monai.bundle import ConfigParser, ConfigWorkflow

    from radmi.engines.distributed import is_rank_zero

    path = recipe_config(recipe, config)
    if tracking == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError as err:
            raise TrainingError("--tracking mlflow needs the mlflow package: pip install mlflow") from err
    settings = rename_deprecated_keys(dict(overrides or {}), ConfigParser.load_config_files(str(path)))
    if tracking is not None and out is not None:
        # MONAI derives its default path by appending to the output_dir *expression*; a plain path breaks it
        settings.setdefault("save_execute_config", str(Path(out) / CONFIG_FILE))
    # MONAI warns when a bundle run gets no logging file; radmi's CLI has configured logging already
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    meta = path.with_name("metadata.json")
    workflow = ConfigWorkflow(
        config_file=str(path),
        meta_file=str(meta) if meta.is_file() else None,
        logging_file=False,
        tracking=tracking,
        workflow_type=workflow_type or ("train" if path.stem == "train" else "infer"),
        **settings,
    )
    try:
        workflow.initialize()
    except Exception as err:
        cause = _unwrapped(err)
        if cause is err:
            raise
        raise cause from err
    if out is not None and is_rank_zero():
        Path(out).mkdir(parents=True, exist_ok=True)
        workflow.parser.export_config_file(workflow.parser.get(), str(Path(out) / CONFIG_FILE), indent=2)
        # radmi wrote it: later `explain`/`evaluate-grounding`/`zero-shot` may evaluate it (radmi.trust)
        record_trusted(Path(out) / CONFIG_FILE)
    return workflow


def run_workflow(workflow: ConfigWorkflow) -> ConfigWorkflow:
    """Run an initialized workflow, then finalize it (also after an error); returns it.

    A radmi error that MONAI's config runner wrapped is raised as itself (chained to the wrapper).
    """
    try:
        workflow.run()
    except Exception as err:
        cause = _unwrapped(err)
        if cause is err:
            raise
        raise cause from err
    finally:
        workflow.finalize()
    return workflow


def run_recipe(
    recipe: str | Path,
    config: str = "train.json",
    overrides: Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    tracking: str | dict | None = None,
    workflow_type: str | None = None,
) -> ConfigWorkflow:
    """:func:`load_recipe` then :func:`run_workflow`; returns the finished ``ConfigWorkflow``."""
    workflow = load_recipe(recipe, config, overrides, out=out, tracking=tracking, workflow_type=workflow_type)
    return run_workflow(workflow)
