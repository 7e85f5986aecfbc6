"""Turning a finished classification run into a MONAI findings bundle: folder, zip and SHA256.

A classification run (``radmi finetune --out RUN_DIR``, see docs/architecture.md) holds
``models/model.pt`` (the ``FindingClassifier`` state dict), ``models/model.json`` (its constructor kwargs) and
``config.json`` (the resolved recipe). :func:`export_run` copies the shipped bundle template
(``bundles/radmi_cxr_findings``), writes the run's network and image size into ``configs/inference.json``,
updates the versions and changelog in ``configs/metadata.json``, verifies the result with
:func:`radmi.bundle.verify.verify_bundle_dir`, and only then writes ``<out>/<name>/``,
``<out>/<name>_v<version>.zip`` and ``<out>/<name>_v<version>.zip.sha256``.

The zip is reproducible: entries are sorted and carry a fixed timestamp, so the same bundle gives the same hash.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

import radmi
from radmi.bundle.paths import bundle_dir as shipped_bundle_dir
from radmi.bundle.verify import MAX_REPO_FILE_BYTES, VerifyReport, verify_bundle_dir
from radmi.data.cache_store import file_sha256
from radmi.errors import BundleError
from radmi.trust import is_trusted, plain_objective_reason, record_trusted

logger = logging.getLogger(__name__)

DEFAULT_NAME = "radmi_cxr_findings"
#: The classifier class named in ``network_def`` when ``model.json`` gives only constructor kwargs.
CLASSIFIER_TARGET = "radmi.models.heads.FindingClassifier"
#: Folders and files of the template that are not copied: weights come from the run, outputs are not shipped.
_SKIP_FROM_TEMPLATE = {"models", "eval", "__pycache__"}
#: Timestamp of every zip entry (the zip format's epoch), so the archive bytes depend on the content alone.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class ExportedBundle:
    """Where :func:`export_run` put things."""

    bundle_dir: Path
    zip_path: Path
    sha256: str
    sha256_path: Path
    report: VerifyReport


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise BundleError("file missing from the run folder (is the run finished?)", path=path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"not valid JSON ({err})", path=path) from err


def network_def_from_model_json(model_json: dict) -> dict:
    """The ``network_def`` config component for the run's classifier.

    ``model.json`` is either a full component (with ``_target_``) or the constructor kwargs of
    ``FindingClassifier``.
    """
    if "_target_" in model_json:
        return dict(model_json)
    return {"_target_": CLASSIFIER_TARGET, **model_json}


def _find_key(tree: Any, names: tuple[str, ...]) -> Any:
    """The first value stored under one of ``names`` anywhere in a nested config (depth-first)."""
    if isinstance(tree, dict):
        for name in names:
            if name in tree and not isinstance(tree[name], (dict, list)):
                return tree[name]
        for value in tree.values():
            found = _find_key(value, names)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for value in tree:
            found = _find_key(value, names)
            if found is not None:
                return found
    return None


def image_size_of_run(run_config: dict, model_json: dict) -> int:
    """The square input size S the run was trained at, from its resolved config (``image_size`` or ``size``)."""
    value = _find_key(run_config, ("image_size", "spatial_size", "size")) or _find_key(
        model_json, ("image_size",)
    )
    if value is None:
        raise BundleError("cannot find the training image size in the run's config.json; pass image_size")
    if isinstance(value, str) and value.startswith(("$", "@")):
        raise BundleError(f"the run's config.json holds an unresolved image size ({value}); pass image_size")
    return int(value)


def _versions() -> dict[str, str]:
    return {
        "monai_version": __import__("monai").__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
    }


def _copy_weights(source: Path, target: Path, half: bool) -> None:
    """Copy the state dict, optionally with every floating-point tensor stored as float16 (half the bytes)."""
    if not half:
        shutil.copyfile(source, target)
        return
    state = torch.load(source, map_location="cpu", weights_only=True)
    # load_state_dict copies into the network's float32 parameters, so a float16 file loads unchanged
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, target)


def _stage(
    template: Path,
    staging: Path,
    run_dir: Path,
    version: str,
    changelog: str,
    image_size: int,
    half_weights: bool = False,
) -> None:
    for item in template.iterdir():
        if item.name in _SKIP_FROM_TEMPLATE:
            continue
        if item.is_dir():
            shutil.copytree(item, staging / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, staging / item.name)
    (staging / "models").mkdir(exist_ok=True)
    _copy_weights(run_dir / "models" / "model.pt", staging / "models" / "model.pt", half_weights)

    inference_path = staging / "configs" / "inference.json"
    inference = json.loads(inference_path.read_text())
    inference["network_def"] = network_def_from_model_json(_read_json(run_dir / "models" / "model.json"))
    inference["image_size"] = image_size
    inference_path.write_text(json.dumps(inference, indent=4) + "\n")

    metadata_path = staging / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata.update(_versions())
    metadata["version"] = version
    metadata["changelog"] = {
        version: changelog,
        **{k: v for k, v in metadata.get("changelog", {}).items() if k != version},
    }
    metadata.setdefault("required_packages_version", {})["radmi"] = radmi.__version__
    metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] = [image_size, image_size]
    metadata["weights_dtype"] = "float16" if half_weights else "float32"
    metadata_path.write_text(json.dumps(metadata, indent=4) + "\n")

    weights = staging / "models" / "model.pt"
    if weights.stat().st_size > MAX_REPO_FILE_BYTES:
        # the model-zoo rule: name the large file so that it can be hosted outside the repository
        (staging / "large_files.yml").write_text(
            "large_files:\n"
            '  - path: "models/model.pt"\n'
            '    url: "REPLACE-WITH-THE-RELEASE-URL-OF/model.pt"\n'
            f'    hash_val: "{file_sha256(weights)}"\n'
            '    hash_type: "sha256"\n'
        )


def write_zip(bundle_dir: Path, zip_path: Path) -> None:
    """Zip ``bundle_dir`` as ``<bundle name>/...`` (the layout ``monai.bundle download`` unpacks), reproducibly."""
    files = sorted(p for p in bundle_dir.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            relative = path.relative_to(bundle_dir).as_posix()
            info = zipfile.ZipInfo(f"{bundle_dir.name}/{relative}", date_time=_ZIP_TIME)
            # float weights barely compress: storing them saves seconds per export for a percent or two of size
            info.compress_type = (
                zipfile.ZIP_STORED if relative.startswith("models/") else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    name: str = DEFAULT_NAME,
    version: str = "0.1.0",
    changelog: str | None = None,
    image_size: int | None = None,
    template: str | Path | None = None,
    overwrite: bool = False,
    half_weights: bool = False,
    trust: bool = False,
) -> ExportedBundle:
    """Export a finished classification run as a verified MONAI bundle folder, zip and SHA256 file.

    Args:
        run_dir: the ``radmi finetune`` output folder.
        out_dir: where ``<name>/``, ``<name>_v<version>.zip`` and its ``.sha256`` are written.
        name: bundle name (the folder and zip name; ``monai.bundle download --name`` uses it).
        version: the bundle version written into metadata.json.
        changelog: the changelog line for this version.
        image_size: training input side S in pixels; read from the run's config.json when None.
        template: bundle folder to start from; the shipped ``bundles/radmi_cxr_findings`` when None.
        overwrite: replace an existing ``<out_dir>/<name>`` folder and zip.
        half_weights: store ``models/model.pt`` in float16 (half the size, e.g. a ResNet-18 classifier drops
            from 45 to 22 MB, under the model-zoo's 25 MB); the network still runs in float32, and the
            probabilities move by about 1e-3.
        trust: build the bundle even if the run's ``models/model.json`` names code outside ``radmi.models`` or
            ``template`` is not trusted (verification evaluates the configs; see :mod:`radmi.trust`).

    The exported folder's configs and the zip are listed in the local trust file: radmi wrote them.

    Raises:
        BundleError: the run is incomplete, or the bundle fails a check (nothing is written then).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    weights = run_dir / "models" / "model.pt"
    if not weights.is_file():
        raise BundleError(
            "no models/model.pt in the run folder (is the classification run finished?)", path=run_dir
        )
    model_json = _read_json(run_dir / "models" / "model.json")
    if not trust:
        reason = plain_objective_reason(network_def_from_model_json(model_json), ("radmi.models.",))
        if reason:
            raise BundleError(
                f"not trusted: models/model.json would run code in the bundle ({reason}); pass --trust if you "
                "trust this run",
                path=run_dir / "models" / "model.json",
            )
    if image_size is None:
        image_size = image_size_of_run(_read_json(run_dir / "config.json"), model_json)
    template = Path(template) if template is not None else shipped_bundle_dir(DEFAULT_NAME)
    changelog = changelog or f"exported from the classification run {run_dir.name}"

    final_dir = out_dir / name
    zip_path = out_dir / f"{name}_v{version}.zip"
    sha_path = zip_path.with_name(zip_path.name + ".sha256")
    if not overwrite and (final_dir.exists() or zip_path.exists()):
        raise BundleError(
            "the bundle already exists; pass overwrite=True (--overwrite) to replace it", path=final_dir
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}-staging-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        _stage(template, staging, run_dir, version, changelog, int(image_size), half_weights)
        # the staged configs are radmi's template + the checked network_def: trusted unless the template is not
        report = verify_bundle_dir(staging, trust=trust or is_trusted(template))  # raises before anything is written
        staged_zip = Path(tmp) / zip_path.name
        write_zip(staging, staged_zip)
        digest = file_sha256(staged_zip)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        shutil.move(str(staging), final_dir)
        shutil.move(str(staged_zip), zip_path)
    sha_path.write_text(f"{digest}  {zip_path.name}\n")
    record_trusted([final_dir, zip_path])  # radmi wrote them: predict/verify may run their configs later
    report.bundle_dir = final_dir
    report.sha256 = digest
    logger.info("exported bundle %s (zip %s, sha256 %s)", final_dir, zip_path, digest)
    return ExportedBundle(
        bundle_dir=final_dir, zip_path=zip_path, sha256=digest, sha256_path=sha_path, report=report
    )
