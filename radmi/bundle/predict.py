"""Running a findings bundle's own ``configs/inference.json`` on DICOMs (``radmi predict``).

There is one inference pipeline, the bundle's config. This module only points it at the user's input, output
file, device and batch size (ConfigParser overrides) and runs it through MONAI's ``ConfigWorkflow``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from radmi.errors import BundleError

logger = logging.getLogger(__name__)


@dataclass
class PredictionSummary:
    """Counts and output paths of one prediction run."""

    num_images: int
    num_predicted: int
    num_failed: int
    csv_path: Path
    json_path: Path


def _output_name(out: Path) -> tuple[Path, str]:
    name = out.name
    for suffix in (".csv", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return out.parent, name


def predict(
    bundle: str | Path,
    inputs: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    sha256: str | None = None,
    full_paths: bool = False,
    trust: bool = False,
) -> PredictionSummary:
    """Classify DICOMs with a findings bundle.

    Args:
        bundle: the unpacked bundle folder (``configs/inference.json``, ``models/model.pt``), or the bundle zip
            itself: it is then checked against its SHA256 (``sha256``, else the ``<zip>.sha256`` file beside it
            when there is one) and unpacked into a temporary folder that is removed after the run
            (:func:`radmi.bundle.verify.unpacked_bundle`).
        inputs: a folder of DICOMs, one DICOM file or a radmi manifest CSV (the bundle's ``dataset_dir``).
        out: the CSV to write; a JSON with the same stem is written beside it.
        device: ``cpu``, ``cuda`` or ``cuda:N``; the bundle's default (CUDA when available) when None.
        batch_size: images per forward pass; the bundle's default when None.
        num_workers: DataLoader worker processes; the bundle's default when None.
        progress: show a tqdm progress bar.
        sha256: expected SHA256 of a bundle zip (bare hash or the ``.sha256`` file's line); an error for a folder.
        full_paths: write absolute input paths to the CSV/JSON; by default they are relative to the input folder
            (MIMIC-CXR-style absolute paths say where the data lives and carry subject ids).
        trust: run the bundle's configs even if it is not trusted. ``configs/inference.json`` is code (MONAI
            ``$`` expressions); radmi runs it only for a zip whose ``sha256`` was given here, a bundle listed in
            the trust file (written by radmi on this machine, or ``radmi bundle trust``), a shipped bundle, or
            with ``trust=True`` (:mod:`radmi.trust`). Otherwise :class:`BundleError` says why.

    Returns:
        the counts (an unreadable file is counted in ``num_failed`` and listed in the CSV with its error).
    """
    from radmi.bundle.verify import unpacked_bundle
    from radmi.trust import require_trusted

    options = dict(
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        full_paths=full_paths,
    )
    if not Path(bundle).exists():
        raise BundleError("no such bundle folder or zip", path=bundle)
    if Path(bundle).is_file():  # the release zip: hash check, then unpacked (a non-zip file is refused there)
        with unpacked_bundle(bundle, sha256) as unpacked:
            if not unpacked.trusted:
                require_trusted(bundle, trust=trust)
            logger.info(
                "bundle zip %s%s, unpacked to %s",
                bundle,
                " (SHA256 matches)" if unpacked.sha256_checked else "",
                unpacked.root,
            )
            return _predict_folder(unpacked.root, inputs, out, **options)
    if sha256:
        raise BundleError("a SHA256 applies to the bundle zip, not to an unpacked folder", path=bundle)
    if (Path(bundle) / "configs" / "inference.json").is_file():  # else _predict_folder names what is missing
        require_trusted(bundle, trust=trust)
    return _predict_folder(Path(bundle), inputs, out, **options)


def _predict_folder(
    bundle: Path,
    inputs: str | Path,
    out: str | Path,
    *,
    device: str | None,
    batch_size: int | None,
    num_workers: int | None,
    progress: bool,
    full_paths: bool = False,
) -> PredictionSummary:
    import torch
    from monai.bundle import ConfigWorkflow

    root = Path(bundle).resolve()
    config = root / "configs" / "inference.json"
    if not config.is_file():
        raise BundleError(
            "not a findings bundle folder (configs/inference.json missing); give the unpacked bundle folder "
            "or the bundle zip",
            path=root,
        )
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise BundleError(f"--device {device} asked for, but PyTorch sees no CUDA device")
    output_dir, output_name = _output_name(Path(out).resolve())
    overrides: dict = {
        "bundle_root": str(root),
        "dataset_dir": str(Path(inputs).resolve()),
        "output_dir": str(output_dir),
        "output_name": output_name,
        "show_progress": bool(progress),
    }
    if full_paths:  # radmi's own expression (the bundle's dataset_data calls list_inputs(@dataset_dir))
        overrides["dataset_data"] = "$radmi.bundle.inference.list_inputs(@dataset_dir, full_paths=True)"
    if device is not None:
        overrides["device"] = f"$torch.device({device!r})"
    if batch_size is not None:
        overrides["batch_size"] = int(batch_size)
    if num_workers is not None:
        overrides["num_workers"] = int(num_workers)
    # MONAI warns when a bundle run gets no logging file; radmi's CLI has configured logging already
    logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    workflow = ConfigWorkflow(
        config_file=str(config),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    writer = workflow.parser.get_parsed_content("writer")
    workflow.finalize()
    return PredictionSummary(
        num_images=len(writer.rows),
        num_predicted=writer.num_ok,
        num_failed=writer.num_failed,
        csv_path=writer.csv_path,
        json_path=writer.json_path,
    )
