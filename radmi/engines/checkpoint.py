"""Resumable checkpoints for pretraining: atomic writes, the random states, and finding the latest one.

A full checkpoint (``RUN_DIR/checkpoints/checkpoint_iteration=N.pt``) holds every object whose state decides
the next iterations: network, objective (critic), optimizer, LR scheduler, GradScaler, the Ignite engine (epoch
and iteration) and :class:`RandomStates` (torch CPU/CUDA, numpy and Python ``random`` generators, the sampler
and the batch augmentation's generator). Everything in it is tensors and plain numbers, so it loads with
``torch.load(..., weights_only=True)`` (MONAI's ``CheckpointLoader`` does exactly that).
"""

from __future__ import annotations

import errno
import logging
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from radmi.errors import TrainingError
from radmi.random_state import load_numpy_state, numpy_state_dict

logger = logging.getLogger(__name__)

__all__ = [
    "AtomicCheckpointSaver",
    "RandomStates",
    "latest_checkpoint",
]

_ITERATION_PATTERN = re.compile(r"checkpoint_iteration=(\d+)\.pt$")


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` writing each interval checkpoint atomically.

    MONAI builds its Ignite ``DiskSaver`` with ``atomic=False`` (for group read permission); a run killed
    mid-write would then leave a truncated ``checkpoint_*.pt`` that looks like the newest one. Ignite's atomic
    ``DiskSaver`` writes a temporary file in the same folder, renames it into place and then grants group/other
    read permission itself, so the only change here is that flag. Arguments are ``CheckpointSaver``'s.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._interval_checkpoint, self._key_metric_checkpoint, self._final_checkpoint):
            if checkpoint is not None:
                fixed_name = getattr(checkpoint.save_handler, "filename", None)
                atomic = _FixedNameDiskSaver(save_dir, fixed_name)
                checkpoint.save_handler = atomic


#: below this much free space, a failed checkpoint write is taken for a full disk
DISK_FULL_BYTES = 64 * 2**20


class _FixedNameDiskSaver(DiskSaver):
    """Atomic ``DiskSaver`` that, like MONAI's private one, can pin the file name (``final_filename``)."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        try:
            super().__call__(checkpoint, self.filename or filename, metadata)
        except (OSError, RuntimeError) as err:
            # torch.save reports a full disk as RuntimeError("... file write failed"), not as ENOSPC
            full = getattr(err, "errno", None) == errno.ENOSPC or shutil.disk_usage(self.dirname).free < DISK_FULL_BYTES
            if not full:
                raise
            raise TrainingError(
                "cannot write the checkpoint: the disk is full; free space and rerun the same command (it resumes "
                "from the last complete checkpoint)",
                path=self.dirname,
            ) from err

    def remove(self, filename: str) -> None:
        super().remove(self.filename or filename)


class RandomStates:
    """Every random generator a pretraining iteration draws from, as one checkpointable object.

    ``state_dict()`` is taken when the checkpoint is written (after an iteration completed), and
    ``load_state_dict()`` runs when MONAI's ``CheckpointLoader`` restores the run (at ``Events.STARTED``), so the
    resumed run's next iteration draws the same numbers as the uninterrupted run's.

    Args:
        sampler: the training sampler (anything with ``state_dict``/``load_state_dict``), or None.
        augment: the batch augmentation (``state_dict``/``load_state_dict`` of its generator), or None.
    """

    def __init__(self, sampler: Any = None, augment: Any = None) -> None:
        self.sampler = sampler
        self.augment = augment

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": numpy_state_dict(),
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if self.sampler is not None and hasattr(self.sampler, "state_dict"):
            state["sampler"] = self.sampler.state_dict()
        if self.augment is not None:
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
        load_numpy_state(state["numpy"])
        python = state["python"]
        random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in state["cuda"]])
        if "sampler" in state and self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
        if "augment" in state and self.augment is not None:
            self.augment.load_state_dict(state["augment"])


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest iteration in ``checkpoint_dir``, or None if there is none.

    Temporary files of an interrupted atomic write have other names and are ignored.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.glob("*.pt") if (m := _ITERATION_PATTERN.search(p.name))]
    return max(found)[1] if found else None
