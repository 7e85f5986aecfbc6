"""What kind of run folder a path is, so that a command given the wrong kind says so in one line.

``radmi pretrain`` writes ``models/image_encoder.pt`` and ``models/text_encoder/``; ``radmi finetune`` writes
``models/model.pt`` (the best classifier). Both write ``config.json``, the executed recipe.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from radmi.errors import ModelLoadError

#: run kind -> the files that identify it (all must exist; "a|b": either), relative to the run folder
RUN_FILES: dict[str, tuple[str, ...]] = {
    "pretrain": ("config.json", "models/image_encoder.pt", "models/text_encoder"),
    "finetune": ("config.json", "models/model.pt|model.pt"),
}


def _exists(folder: Path, name: str) -> bool:
    return any((folder / alternative).exists() for alternative in name.split("|"))

#: what to do instead, by (kind asked for, kind found)
_HINTS = {
    ("finetune", "pretrain"): "train a classifier on it first: radmi finetune --init RUN ...",
    ("pretrain", "finetune"): "give the `radmi pretrain` run this classifier was initialised from",
}


def run_kind(run_dir: str | PathLike) -> str | None:
    """``"pretrain"``, ``"finetune"`` or None (not a finished radmi run)."""
    folder = Path(run_dir)
    for kind, files in RUN_FILES.items():
        if all(_exists(folder, name) for name in files):
            return kind
    return None


def require_run(run_dir: str | PathLike, kind: str) -> Path:
    """``run_dir`` as a Path if it is a finished run of ``kind``; else a :class:`ModelLoadError` that names the
    folder, what it is instead and what to do."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ModelLoadError("no such run folder", path=folder)
    found = run_kind(folder)
    if found == kind:
        return folder
    if found is not None:
        raise ModelLoadError(f"this is a `radmi {found}` run, not a `radmi {kind}` run; {_HINTS[kind, found]}",
                             path=folder)
    missing = [name.replace("|", " or ") for name in RUN_FILES[kind] if not _exists(folder, name)]
    raise ModelLoadError(f"not a finished `radmi {kind}` run ({', '.join(missing)} missing)", path=folder)
