"""Distributed glue for pretraining, built on ``ignite.distributed`` (``idist``).

One code path serves a single CPU process, one GPU, and many GPUs on many nodes: launched by ``torchrun``
(``torch.distributed.run``), each process finds ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment and
:func:`setup` joins the process group through ``idist.initialize``; launched plainly, nothing is initialised and
every helper degrades to the single-process case. Models go through ``idist.auto_model`` (DDP, one device per
process), loaders through ``idist.auto_dataloader`` (the global batch is split across processes), and only rank
0 logs, writes checkpoints and exports models.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import ignite.distributed as idist
import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

logger = logging.getLogger(__name__)

__all__ = [
    "ResumableSampler",
    "cleanup",
    "default_backend",
    "is_rank_zero",
    "launched_by_torchrun",
    "prepare_module",
    "setup",
    "unwrap",
]


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process job (``torchrun`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def default_backend() -> str:
    """``nccl`` when CUDA is available, else ``gloo`` (the CPU backend)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def setup(backend: str | None = None) -> torch.device:
    """Join the process group when launched by ``torchrun`` and return this process's device.

    Args:
        backend: ``"nccl"`` (GPUs), ``"gloo"`` (CPU) or ``None`` for :func:`default_backend`.

    Returns:
        ``cuda:<local rank>`` when CUDA is available, else ``cpu``.
    """
    if launched_by_torchrun() and idist.get_world_size() == 1:
        idist.initialize(backend or default_backend())
        logger.info("joined process group: rank %d of %d", idist.get_rank(), idist.get_world_size())
    device = idist.device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def cleanup() -> None:
    """Leave the process group if :func:`setup` joined one (safe to call in any case)."""
    if idist.get_world_size() > 1:
        idist.finalize()


def is_rank_zero() -> bool:
    """True in the process that logs, saves checkpoints and exports models."""
    return idist.get_rank() == 0


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (or the module itself)."""
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


def prepare_module(
    module: nn.Module, device: torch.device | str, find_unused_parameters: bool = True
) -> nn.Module:
    """Move ``module`` to ``device`` and wrap it in DDP when several processes train together.

    A module without trainable parameters (e.g. an objective whose critic has none) is only moved: DDP refuses
    such modules and there is nothing to synchronise. ``find_unused_parameters`` defaults to True because a
    text model may carry parameters the objective never uses (e.g. a BERT pooler when sentences are mean-pooled).
    """
    module = module.to(device)
    if not any(p.requires_grad for p in module.parameters()):
        return module
    kwargs = {"find_unused_parameters": find_unused_parameters} if idist.get_world_size() > 1 else {}
    return idist.auto_model(module, sync_bn=False, **kwargs)


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` whose epoch order depends only on ``(seed, epoch)`` and can start mid-epoch.

    Ignite resumes a run at the stored iteration but restarts the data iterator at the epoch's first batch;
    :meth:`skip` makes the next epoch's iterator begin ``n`` samples into this process's share, so a resumed
    run sees exactly the batches the uninterrupted run would have seen. With one process it is a plain seeded
    shuffle. ``set_epoch`` is called by MONAI's ``Workflow`` at every epoch start.

    Args:
        dataset: the training dataset (length N).
        num_replicas, rank: world size and this process's rank (default: from ``ignite.distributed``).
        shuffle: reshuffle every epoch.
        seed: base seed of the permutation.
        drop_last: drop the tail so every process gets the same number of samples.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=idist.get_world_size() if num_replicas is None else num_replicas,
            rank=idist.get_rank() if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self._skip = 0

    def skip(self, n_samples: int) -> None:
        """Start the next iteration ``n_samples`` into this process's share of the epoch (used once)."""
        self._skip = int(n_samples)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self._skip = self._skip, 0
        return iter(indices[start:])

    def state_dict(self) -> dict[str, int]:
        """The sampler's position as plain ints (its order is a function of these)."""
        return {"seed": int(self.seed), "epoch": int(self.epoch)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
