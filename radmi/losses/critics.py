"""Critics T(v, s): score an (image feature, text feature) pair; high for matching pairs.

Every critic scores whole grids of pairs at once:

- ``critic(v: Nv x Dv, s: Ns x Ds) -> Nv x Ns``: every row of ``v`` against every row of ``s`` (the batch grid
  the estimators need, e.g. all B*R image regions against all B*K sentences);
- ``critic.paired(v: B x N x Dv, s: B x M x Ds) -> B x N x M``: pairs within each sample only (heat maps).

Scores are unbounded real numbers (logits), not probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Critic(nn.Module):
    """Base class: subclasses implement ``forward`` (all pairs) and ``paired`` (pairs within a sample)."""

    def __init__(self, normalize: bool) -> None:
        super().__init__()
        self.normalize = bool(normalize)
        #: constructor arguments, for :attr:`config`
        self.init_args: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """A MONAI config item (``{"_target_": ..., ...}``) that rebuilds this critic untrained."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self.init_args}

    def _maybe_normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def paired(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class DotCritic(Critic):
    """``T(v, s) = <v, s> / tau`` on L2-normalized features (cosine similarity over a temperature).

    Args:
        temperature: tau (> 0); its starting value when learnable.
        learnable_temperature: learn log(1/tau) (clamped so 1/tau <= ``max_scale``).
        normalize: L2-normalize v and s first (the usual choice); False gives the raw dot product over tau.
        max_scale: the largest allowed 1/tau, which keeps a learned temperature from collapsing.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        learnable_temperature: bool = True,
        normalize: bool = True,
        max_scale: float = 100.0,
    ) -> None:
        super().__init__(normalize)
        self.init_args = {
            "temperature": float(temperature),
            "learnable_temperature": bool(learnable_temperature),
            "normalize": bool(normalize),
            "max_scale": float(max_scale),
        }
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.max_log_scale = math.log(max_scale)

    @property
    def scale(self) -> torch.Tensor:
        """1 / tau (a scalar tensor)."""
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v: Nv x D, s: Ns x D -> Nv x Ns``."""
        return self._maybe_normalize(v) @ self._maybe_normalize(s).transpose(-1, -2) * self.scale

    def paired(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v: B x N x D, s: B x M x D -> B x N x M``."""
        return self.forward(v, s)  # the batched matmul already pairs within each sample


class BilinearCritic(Critic):
    """``T(v, s) = v^T W s`` with a learned ``Dv x Ds`` matrix W (initialized to the identity).

    Args:
        dim_v, dim_s: feature sizes of the image and text sides.
        normalize: L2-normalize v and s first.
    """

    def __init__(self, dim_v: int, dim_s: int, normalize: bool = False) -> None:
        super().__init__(normalize)
        self.init_args = {"dim_v": int(dim_v), "dim_s": int(dim_s), "normalize": bool(normalize)}
        self.weight = nn.Parameter(torch.empty(int(dim_v), int(dim_s)))
        nn.init.eye_(self.weight)

    def forward(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v: Nv x Dv, s: Ns x Ds -> Nv x Ns``."""
        return (self._maybe_normalize(v) @ self.weight) @ self._maybe_normalize(s).transpose(-1, -2)

    def paired(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v: B x N x Dv, s: B x M x Ds -> B x N x M``."""
        return self.forward(v, s)


class ConcatMLPCritic(Critic):
    """``T(v, s) = MLP([v; s])``: concatenation -> hidden layers with ReLU -> 1 (the seed paper's critic).

    The first layer is separable, ``W [v; s] + b = W_v v + W_s s + b``, so it is applied once per feature rather
    than once per pair. The later layers must run per pair; pairs are processed in chunks of at most
    ``chunk_pairs`` and, when gradients are needed, each chunk is recomputed in the backward pass
    (``torch.utils.checkpoint``) so that memory holds one chunk's activations at a time. Peak memory is thus
    set by the chunk, not the batch: with the defaults, 2^18 pairs x (1024 + 512) hidden floats is about 1.6 GB
    of float32 activations (a few GB with their gradients), whether the grid is B = 64 images x 14 x 14 regions
    against 64 x 16 sentences (12.8 M pairs) or larger. The pair grid of scores itself is 4 bytes per pair.

    Args:
        dim_v, dim_s: feature sizes of the image and text sides.
        hidden: hidden layer sizes (the authors' critic: 1536 -> 1024 -> 512 -> 1 for 768-d features).
        normalize: L2-normalize v and s first.
        chunk_pairs: the most pairs whose hidden activations exist at once.
        checkpoint: recompute chunks in the backward pass instead of storing them.
    """

    def __init__(
        self,
        dim_v: int,
        dim_s: int,
        hidden: Sequence[int] = (1024, 512),
        normalize: bool = False,
        chunk_pairs: int = 2**18,
        checkpoint: bool = True,
    ) -> None:
        super().__init__(normalize)
        hidden = [int(h) for h in hidden]
        self.init_args = {
            "dim_v": int(dim_v),
            "dim_s": int(dim_s),
            "hidden": hidden,
            "normalize": bool(normalize),
            "chunk_pairs": int(chunk_pairs),
            "checkpoint": bool(checkpoint),
        }
        if not hidden:
            raise ValueError("ConcatMLPCritic needs at least one hidden layer")
        self.first_v = nn.Linear(int(dim_v), hidden[0])
        self.first_s = nn.Linear(int(dim_s), hidden[0], bias=False)  # one bias for the pair is enough
        layers: list[nn.Module] = []
        for n_in, n_out in zip(hidden, [*hidden[1:], 1], strict=True):
            layers += [nn.ReLU(), nn.Linear(n_in, n_out)]
        self.rest = nn.Sequential(*layers)
        self.chunk_pairs = int(chunk_pairs)
        self.use_checkpoint = bool(checkpoint)

    def _pair_scores(self, v_part: torch.Tensor, s_part: torch.Tensor) -> torch.Tensor:
        """``v_part: ... x N x H, s_part: ... x M x H`` (first-layer outputs) -> ``... x N x M``."""
        return self.rest(v_part.unsqueeze(-2) + s_part.unsqueeze(-3)).squeeze(-1)

    def _run(self, v_part: torch.Tensor, s_part: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled() and (v_part.requires_grad or s_part.requires_grad):
            return checkpoint(self._pair_scores, v_part, s_part, use_reentrant=False)
        return self._pair_scores(v_part, s_part)

    def forward(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v: Nv x Dv, s: Ns x Ds -> Nv x Ns``, in chunks of rows of v."""
        v_part = self.first_v(self._maybe_normalize(v))  # Nv x H
        s_part = self.first_s(self._maybe_normalize(s))  # Ns x H
        rows = max(1, self.chunk_pairs // max(1, s_part.shape[0]))
        return torch.cat([self._run(chunk, s_part) for chunk in v_part.split(rows, dim=0)], dim=0)

    def paired(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``v: B x N x Dv, s: B x M x Ds -> B x N x M``, in chunks of samples."""
        v_part = self.first_v(self._maybe_normalize(v))  # B x N x H
        s_part = self.first_s(self._maybe_normalize(s))  # B x M x H
        per_sample = max(1, v_part.shape[1] * s_part.shape[1])
        samples = max(1, self.chunk_pairs // per_sample)
        chunks = zip(v_part.split(samples, dim=0), s_part.split(samples, dim=0), strict=True)
        return torch.cat([self._run(v_chunk, s_chunk) for v_chunk, s_chunk in chunks], dim=0)


#: Critic name -> class, as named in configs.
CRITICS = {"dot": DotCritic, "bilinear": BilinearCritic, "concat_mlp": ConcatMLPCritic}


def build_critic(
    name: str, dim_v: int | None = None, dim_s: int | None = None, options: dict | None = None, **kwargs
) -> Critic:
    """Make a critic from its config name; ``bilinear`` and ``concat_mlp`` need the feature sizes.

    ``options`` (a dict, as a recipe's ``critic_kwargs``) and ``kwargs`` are the critic's other arguments.
    """
    kwargs = {**dict(options or {}), **kwargs}
    if name not in CRITICS:
        raise ValueError(f"critic must be one of {sorted(CRITICS)}, got {name!r}")
    if name == "dot":
        return DotCritic(**kwargs)
    if dim_v is None or dim_s is None:
        raise ValueError(f"the {name} critic needs the feature sizes (embed_dim)")
    return CRITICS[name](dim_v, dim_s, **kwargs)
