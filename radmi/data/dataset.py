"""Datasets over a manifest, with exact accounting of skipped rows.

``make_dataset(manifest, transform, on_error="skip")`` returns a MONAI ``Dataset`` whose items are the
transformed manifest rows. A row whose transform raises a radmi error (bad DICOM, missing report, ...) is
either re-raised with its row number (``on_error="raise"``) or replaced by a :class:`SkippedItem` marker.
Markers never reach the model: :func:`collate_skipping` drops them from the batch and carries them in it,
and :class:`ManifestDataLoader` records them in the main process, so ``dataset.skips`` stays exact with any
number of DataLoader workers. Each skip is logged once (row, file, reason; never report text or patient ids).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike

import pandas as pd
from monai.data import DataLoader, Dataset, list_data_collate
from monai.transforms import Compose
from torch.utils.data import get_worker_info

from radmi.data.manifest_schema import read_manifest_within_roots
from radmi.errors import radmi_cause

logger = logging.getLogger(__name__)

#: Batch key under which ``collate_skipping`` carries the markers of the dropped items.
SKIPPED_KEY = "_skipped"
ON_ERROR = ("raise", "skip")


@dataclass
class SkippedItem:
    """Marker returned instead of a sample whose transform failed (``on_error="skip"``).

    Attributes:
        row: 0-based manifest row.
        path: the file the error names (or the row's image path).
        reason: the error's reason.
        error: the radmi exception class name (e.g. ``DicomError``).
        recorded: already counted (set when the item was made in the main process).
    """

    row: int
    path: str
    reason: str
    error: str
    recorded: bool = False


@dataclass
class SkipLog:
    """Exact record of skipped items: ``count`` events, ``rows`` distinct rows, ``by_error`` per class."""

    events: list[SkippedItem] = field(default_factory=list)

    def record(self, item: SkippedItem) -> None:
        item.recorded = True
        self.events.append(item)
        logger.warning("skipped manifest row %d (%s): %s: %s", item.row, item.path, item.error, item.reason)

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def rows(self) -> list[int]:
        return sorted({item.row for item in self.events})

    @property
    def by_error(self) -> Counter:
        return Counter(item.error for item in self.events)

    def table(self) -> pd.DataFrame:
        """One line per distinct skipped row: row, path, error, reason."""
        frame = pd.DataFrame(
            [(i.row, i.path, i.error, i.reason) for i in self.events],
            columns=["row", "path", "error", "reason"],
        )
        return frame.drop_duplicates("row").sort_values("row", ignore_index=True)


class ManifestDataset(Dataset):
    """MONAI ``Dataset`` of manifest rows (dicts with the manifest's columns plus ``row``).

    Args:
        manifest: a manifest DataFrame (from ``read_manifest``) or a path to one.
        transform: MONAI transform(s) applied to each row dict (e.g. ``radmi.data.pipeline.sample_transform()``).
        on_error: ``raise``: a radmi error is re-raised with its manifest row; ``skip``: the item becomes a
            :class:`SkippedItem` (use :func:`collate_skipping` / :class:`ManifestDataLoader`).
        split: keep only rows of this split (``train``, ``validate``, ``test``); ``None`` keeps all.
    """

    def __init__(
        self,
        manifest: pd.DataFrame | str | PathLike,
        transform: Callable | Sequence[Callable] | None = None,
        on_error: str = "raise",
        split: str | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        frame = manifest if isinstance(manifest, pd.DataFrame) else read_manifest_within_roots(manifest)
        frame = frame.reset_index(drop=True).rename_axis("row").reset_index()
        if split is not None:
            frame = frame[frame["split"] == split]
        if transform is not None and not callable(transform):
            transform = Compose(transform)
        super().__init__(frame.to_dict("records"), transform)
        self.on_error = on_error
        self.skips = SkipLog()

    def _transform(self, index: int):
        row = self.data[index]
        try:
            return super()._transform(index)
        except Exception as err:
            cause = radmi_cause(err)
            if cause is None:
                raise  # a bug, not bad data: never skipped
            if self.on_error == "raise":
                raise type(cause)(cause.reason, path=cause.path, row=row["row"]) from err
            item = SkippedItem(
                row["row"], cause.path or str(row.get("image_path", "")), cause.reason, type(cause).__name__
            )
            if (
                get_worker_info() is None
            ):  # main process: count now; workers' copies are counted by the loader
                self.skips.record(item)
            return item


def make_dataset(
    manifest: pd.DataFrame | str | PathLike,
    transform: Callable | Sequence[Callable] | None = None,
    on_error: str = "raise",
    split: str | None = None,
) -> ManifestDataset:
    """A :class:`ManifestDataset` (see there)."""
    return ManifestDataset(manifest, transform, on_error=on_error, split=split)


def collate_skipping(batch: Sequence) -> dict:
    """``list_data_collate`` of the real samples; :class:`SkippedItem` markers go under ``SKIPPED_KEY``.

    A batch made only of skipped items is ``{SKIPPED_KEY: [...]}``.
    """
    skipped = [item for item in batch if isinstance(item, SkippedItem)]
    kept = [item for item in batch if not isinstance(item, SkippedItem)]
    collated = list_data_collate(kept) if kept else {}
    collated[SKIPPED_KEY] = skipped
    return collated


class ManifestDataLoader(DataLoader):
    """MONAI ``DataLoader`` over a :class:`ManifestDataset` that drops skipped items and counts them.

    Uses :func:`collate_skipping`; on the main-process side it records each marker in ``dataset.skips`` (once)
    and removes ``SKIPPED_KEY`` from the batch. Batches with no sample left are not yielded, so a batch may
    hold fewer than ``batch_size`` samples.
    """

    def __init__(self, dataset: ManifestDataset, num_workers: int = 0, **kwargs) -> None:
        kwargs.setdefault("collate_fn", collate_skipping)
        super().__init__(dataset, num_workers=num_workers, **kwargs)

    def __iter__(self) -> Iterator:
        for batch in super().__iter__():
            for item in batch.pop(SKIPPED_KEY, []):
                if not item.recorded:
                    self.dataset.skips.record(item)
            if batch:
                yield batch
