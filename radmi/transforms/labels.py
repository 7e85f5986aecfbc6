"""MONAI transforms turning a manifest row's CheXpert label columns into training targets."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, Transform

from radmi.data.labels import (
    CHEXPERT_LABELS,
    apply_label_policy,
    check_policies,
    edema_severity_to_int,
)
from radmi.errors import ManifestError


def _as_float(value) -> float:
    """A manifest cell as float: NaN for blank/None/empty string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return float("nan")
    return float(value)


class CheXpertLabels(Transform):
    """Raw label values (14) -> ``(labels, label_mask)``, both float32 tensors of shape 14.

    Args:
        uncertain: uncertainty policy, ``ignore`` | ``ones`` | ``zeros`` (see ``radmi.data.labels``).
        blank: blank policy, ``negative`` | ``ignore``.
    """

    def __init__(self, uncertain: str = "ignore", blank: str = "negative") -> None:
        check_policies(uncertain, blank)
        self.uncertain = uncertain
        self.blank = blank

    def __call__(self, values: Sequence[float] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            raw = np.array([_as_float(v) for v in values], dtype=np.float64)
            labels, mask = apply_label_policy(raw, self.uncertain, self.blank)
        except ValueError as err:
            raise ManifestError(f"invalid CheXpert label: {err}") from err
        return torch.from_numpy(labels), torch.from_numpy(mask)


class CheXpertLabelsd(MapTransform):
    """Gather the 14 label columns of a manifest row into ``labels`` and ``label_mask`` (14 float32 each),
    and the ``edema_severity`` column into an int64 scalar tensor (-1 when blank or absent).

    Args:
        keys: the label columns, in order (default ``CHEXPERT_LABELS``).
        uncertain: uncertainty policy, ``ignore`` | ``ones`` | ``zeros``.
        blank: blank policy, ``negative`` | ``ignore``.
        labels_key, mask_key: output keys.
        edema_key: the edema severity key (read and overwritten); ``None`` to leave it alone.
        allow_missing_keys: a missing label column counts as blank instead of raising.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] = CHEXPERT_LABELS,
        uncertain: str = "ignore",
        blank: str = "negative",
        labels_key: str = "labels",
        mask_key: str = "label_mask",
        edema_key: str | None = "edema_severity",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = CheXpertLabels(uncertain, blank)
        self.labels_key = labels_key
        self.mask_key = mask_key
        self.edema_key = edema_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        missing = [key for key in self.keys if key not in d]
        if missing and not self.allow_missing_keys:
            raise ManifestError(f"the sample has no label column(s) {missing}")
        d[self.labels_key], d[self.mask_key] = self.converter([d.get(key) for key in self.keys])
        if self.edema_key is not None:
            try:
                severity = edema_severity_to_int(np.array([_as_float(d.get(self.edema_key))]))[0]
            except ValueError as err:
                raise ManifestError(f"invalid {self.edema_key}: {err}") from err
            d[self.edema_key] = torch.tensor(int(severity), dtype=torch.int64)
        return d
