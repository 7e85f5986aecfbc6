"""``CachedDataset``: the samples of a prepared cache, straight from its memory maps.

Reading a sample is a few array slices: no DICOM decoding, no resizing, no tokenizing. ``__getitems__`` reads a
whole batch with one fancy index per array, which ``torch.utils.data.DataLoader`` uses automatically; with
``collate_fn=collate_cached`` the batch is not stacked a second time::

    loader = DataLoader(CachedDataset("cache256", split="train"), batch_size=64, shuffle=True,
                        collate_fn=collate_cached)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import Dataset, list_data_collate
from torch.utils.data import get_worker_info

from radmi.data.cache_store import INDEX_CSV, PIXEL_MAX, load_cache_info, open_arrays, shard_dir

#: Token arrays, stored as small integers and returned as int64 (docs/architecture.md).
_TOKEN_KEYS = ("input_ids", "attention_mask", "sentence_ids")
_SPLITS = ("train", "validate", "test")


class CachedDataset(Dataset):
    """MONAI ``Dataset`` over a prepared cache (``radmi prepare``), optionally one split.

    Each item is the sample dict of ``docs/architecture.md`` without the report text:

    - ``image``: ``1 x S x S`` float32 in [0, 1] (stored value / 255 or / 65535), bright = dense;
    - ``input_ids``, ``attention_mask``, ``sentence_ids``: ``T`` int64 each (sentence id -1 = special/pad);
    - ``labels``, ``label_mask``: 14 float32; ``edema_severity``: int64 scalar, -1 when absent;
    - ``study_id``, ``subject_id``: int64 scalars; ``dicom_id``: str.

    Args:
        cache_dir: the cache folder (must be complete: ``cache.json`` present).
        split: ``"train"``, ``"validate"`` or ``"test"`` keeps the rows of that split; ``None`` keeps all.
        transform: optional MONAI transform(s) applied to each sample dict (after reading).

    Attributes:
        info: the parsed ``cache.json`` (manifest hash, parameters, counts, bad rows).
        index: the index table of the kept rows of this split (``row`` = manifest row).
    """

    def __init__(
        self,
        cache_dir: str | PathLike,
        split: str | None = None,
        transform: Callable | Sequence[Callable] | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.info: dict[str, Any] = load_cache_info(self.cache_dir)
        if split is not None and split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS} or None, not {split!r}")
        index = pd.read_csv(
            self.cache_dir / INDEX_CSV,
            dtype={"subject_id": str, "study_id": str, "dicom_id": str, "view": str, "split": str},
        )
        index[["view", "split"]] = index[["view", "split"]].fillna("")
        if split is not None:
            index = index[index["split"] == split].reset_index(drop=True)
        self.index = index
        self.split = split
        params = self.info["params"]
        self.image_size: int = params["size"]
        self.max_length: int = params["max_length"]
        self._scale = float(PIXEL_MAX[params["dtype"]])
        self._shard = index["shard"].to_numpy(np.int64)
        self._slot = index["slot"].to_numpy(np.int64)
        self._study = index["study_id"].astype(np.int64).to_numpy()
        self._subject = index["subject_id"].astype(np.int64).to_numpy()
        self._dicom = index["dicom_id"].to_numpy(object)
        self._arrays: list[dict[str, np.memmap]] | None = None
        self._arrays_pid: int | None = None
        super().__init__(data=np.arange(len(index)), transform=transform)

    # memory maps are opened lazily in each process and never pickled (spawned DataLoader workers)
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def _shard_arrays(self) -> list[dict[str, np.memmap]]:
        if self._arrays is None or self._arrays_pid != os.getpid():
            count = int(self.info["shards"])
            self._arrays = [open_arrays(shard_dir(self.cache_dir, i, count)) for i in range(count)]
            self._arrays_pid = os.getpid()
        return self._arrays

    def _read(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Raw arrays of the kept rows ``positions`` (into ``self.index``), batch first."""
        arrays = self._shard_arrays()
        shards, slots = self._shard[positions], self._slot[positions]
        if len(positions) == 0 or (shards == shards[0]).all():
            source = arrays[int(shards[0])] if len(positions) else arrays[0]
            return {name: source[name][slots] for name in source}
        out = {name: np.empty((len(positions), *a.shape[1:]), a.dtype) for name, a in arrays[0].items()}
        for shard in np.unique(shards):
            where = np.flatnonzero(shards == shard)
            for name, array in arrays[int(shard)].items():
                out[name][where] = array[slots[where]]
        return out

    def _batch(self, positions: np.ndarray) -> dict[str, Any]:
        """The collated batch of the kept rows ``positions``: the sample keys with a leading ``B``."""
        raw = self._read(positions)
        in_worker = get_worker_info() is not None
        pixels = torch.from_numpy(raw["images"]).unsqueeze(1)
        # in a DataLoader worker, write straight into shared memory: the batch crosses to the main process
        # without one more copy (what default_collate does for the tensors it stacks)
        images = torch.empty(pixels.shape, dtype=torch.float32)
        if in_worker:
            images.share_memory_()
        images.copy_(pixels).div_(self._scale)  # measured faster than one mixed-dtype torch.div(..., out=)
        batch: dict[str, Any] = {"image": images}
        for key in _TOKEN_KEYS:
            batch[key] = torch.from_numpy(raw[key]).to(torch.int64)
        batch["labels"] = torch.from_numpy(np.ascontiguousarray(raw["labels"]))
        batch["label_mask"] = torch.from_numpy(np.ascontiguousarray(raw["label_mask"]))
        batch["edema_severity"] = torch.from_numpy(raw["edema_severity"]).to(torch.int64)
        batch["study_id"] = torch.from_numpy(self._study[positions])
        batch["subject_id"] = torch.from_numpy(self._subject[positions])
        batch["dicom_id"] = self._dicom[positions].tolist()
        return batch

    def _transform(self, index: int) -> dict[str, Any]:
        sample = CachedBatch(self._batch(np.asarray([self.data[index]])))[0]
        return sample if len(self.transform.transforms) == 0 else self.transform(sample)

    def __getitems__(self, indices: Sequence[int]) -> CachedBatch | list[dict[str, Any]]:
        """The samples at ``indices``, read with one fancy index per array (DataLoader's batched fetch).

        Returns a :class:`CachedBatch` (a sequence of sample dicts that :func:`collate_cached` turns into the
        batch without stacking again), or a list of transformed samples when the dataset has a ``transform``.
        """
        batch = CachedBatch(self._batch(self.data[np.asarray(indices, dtype=np.int64)]))
        if len(self.transform.transforms) == 0:
            return batch
        return [self.transform(sample) for sample in batch]


class CachedBatch(Sequence):
    """Samples read together by :meth:`CachedDataset.__getitems__`, kept stacked.

    ``batch`` is the collated dict (tensors ``B x ...``, ``dicom_id`` a list of B strings); ``samples[b]`` is
    sample ``b`` as a dict of views, so code that expects a list of samples (``default_collate``) still works.
    """

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["dicom_id"])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[b] for b in range(*index.indices(len(self)))]
        return {key: value[index] for key, value in self.batch.items()}


def collate_cached(samples: Sequence[Any]) -> dict[str, Any]:
    """``collate_fn`` for DataLoaders over a :class:`CachedDataset`: a :class:`CachedBatch` is returned as it
    is (already stacked); anything else goes through MONAI's ``list_data_collate``.
    """
    if isinstance(samples, CachedBatch):
        return samples.batch
    return list_data_collate(samples)
