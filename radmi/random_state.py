"""numpy random generators as checkpointable tensors and numbers (they load with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def numpy_state_dict(generator: np.random.RandomState | None = None) -> dict[str, Any]:
    """A numpy ``RandomState`` (default: the global one) as tensors and numbers, safe for ``weights_only``."""
    name, key, pos, has_gauss, cached = (generator or np.random).get_state()
    return {
        "generator": name,
        "key": torch.as_tensor(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def load_numpy_state(state: Mapping[str, Any], generator: np.random.RandomState | None = None) -> None:
    """Inverse of :func:`numpy_state_dict`."""
    key = np.asarray(torch.as_tensor(state["key"]).cpu().numpy(), dtype=np.uint32)
    (generator or np.random).set_state(
        (
            str(state["generator"]),
            key,
            int(state["pos"]),
            int(state["has_gauss"]),
            float(state["cached_gaussian"]),
        )
    )
