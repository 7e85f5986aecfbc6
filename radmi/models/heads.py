"""Heads on top of the encoders: projections and the finding classifier shipped in the findings bundle.

``FindingClassifier(x: B x 1 x H x W) -> B x num_labels`` logits (a plain tensor, so MONAI's
``verify_net_in_out`` and TorchScript export work); the optional edema-severity head is read with
:meth:`FindingClassifier.forward_all`. Its constructor kwargs are JSON, so ``models/model.json`` rebuilds it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from radmi.errors import ModelLoadError
from radmi.models.image import ImageEncoder

MODEL_FILE = "model.pt"
MODEL_CONFIG_FILE = "model.json"


class ProjectionHead(nn.Module):
    """A linear map, or an MLP with ReLUs, applied to the last dimension.

    Args:
        in_dim: input features D.
        out_dim: output features E.
        hidden: sizes of the hidden layers; empty for a single linear layer.

    Shapes: ``... x D -> ... x E``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        sizes = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        layers: list[nn.Module] = []
        for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            if index > 0:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(n_in, n_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ImageEncoderLike(Protocol):
    """What :class:`FindingClassifier` needs of an image encoder (an ``nn.Module``); duck-typed, not a base class.

    ``encoder(x: B x 1 x H x W) -> (global B x E, local B x E x h x w)``, ``embed_dim`` = E, and ``config``: the
    JSON constructor kwargs written to ``model.json`` (only needed to save the classifier).
    """

    embed_dim: int

    @property
    def config(self) -> dict[str, Any]: ...

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class FindingClassifier(nn.Module):
    """Image encoder + linear heads for the 14 findings and, optionally, edema severity.

    Args:
        image_encoder: an ``nn.Module`` with an integer ``embed_dim`` (see :class:`ImageEncoderLike`), e.g. an
            :class:`~radmi.models.image.ImageEncoder`; or ``ImageEncoder``'s constructor kwargs as a dict (this
            is how ``model.json`` and bundle configs describe it).
        num_labels: number of finding logits (14 CheXpert labels).
        edema_classes: 0 for no edema head, or 4 for severity 0-3 logits.
        dropout: dropout probability before the heads.
        freeze_encoder: linear probing: no gradients into the encoder, and its batch norms stay in eval mode.

    Shapes: ``forward(x: B x 1 x H x W) -> B x num_labels``; ``forward_all`` returns
    ``{"findings": B x num_labels, "edema": B x edema_classes}`` (no ``edema`` key without the head).
    """

    def __init__(
        self,
        image_encoder: nn.Module | dict[str, Any],
        num_labels: int = 14,
        edema_classes: int = 0,
        dropout: float = 0.0,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(image_encoder, dict):
            image_encoder = ImageEncoder(**image_encoder)
        if not isinstance(image_encoder, nn.Module) or not isinstance(
            getattr(image_encoder, "embed_dim", None), int
        ):
            raise TypeError(
                "image_encoder must be an nn.Module with an integer embed_dim (e.g. an ImageEncoder) or "
                f"ImageEncoder's kwargs, got {type(image_encoder).__name__}"
            )
        if edema_classes not in (0, 4):
            raise ValueError(f"edema_classes must be 0 or 4, got {edema_classes}")
        self.image_encoder = image_encoder
        self.num_labels = int(num_labels)
        self.edema_classes = int(edema_classes)
        self.dropout_p = float(dropout)
        self.freeze_encoder = bool(freeze_encoder)
        embed_dim = image_encoder.embed_dim
        self.dropout = nn.Dropout(self.dropout_p)
        self.findings_head = nn.Linear(embed_dim, self.num_labels)
        self.edema_head = nn.Linear(embed_dim, self.edema_classes) if self.edema_classes else None
        if self.freeze_encoder:
            self.image_encoder.requires_grad_(False)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-serializable), the content of ``model.json``."""
        return {
            "image_encoder": self.image_encoder.config,
            "num_labels": self.num_labels,
            "edema_classes": self.edema_classes,
            "dropout": self.dropout_p,
            "freeze_encoder": self.freeze_encoder,
        }

    def train(self, mode: bool = True) -> FindingClassifier:
        super().train(mode)
        if self.freeze_encoder:
            # a frozen encoder must not update its batch-norm statistics either
            self.image_encoder.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 1 x H x W`` -> the encoder's global embedding ``B x E``."""
        global_embedding, _ = self.image_encoder(x)
        return self.dropout(global_embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 1 x H x W`` -> finding logits ``B x num_labels``."""
        return self.findings_head(self.embed(x))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``B x 1 x H x W`` -> ``{"findings": B x num_labels[, "edema": B x edema_classes]}``."""
        embedding = self.embed(x)
        out = {"findings": self.findings_head(embedding)}
        if self.edema_head is not None:
            out["edema"] = self.edema_head(embedding)
        return out

    def save(self, models_dir: str | Path) -> Path:
        """Write ``model.pt`` (state dict) and ``model.json`` (kwargs) into ``models_dir``."""
        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), models_dir / MODEL_FILE)
        (models_dir / MODEL_CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n")
        return models_dir / MODEL_FILE


def load_finding_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> FindingClassifier:
    """Rebuild a :class:`FindingClassifier` from a run directory, its ``models/`` folder or ``model.pt``."""
    path = Path(path)
    weights = next(
        (p for p in (path, path / MODEL_FILE, path / "models" / MODEL_FILE) if p.is_file()),
        None,
    )
    if weights is None:
        raise ModelLoadError(
            f"no classifier weights found (looked for {MODEL_FILE} and models/{MODEL_FILE})", path=path
        )
    config_path = weights.with_name(MODEL_CONFIG_FILE)
    if not config_path.is_file():
        raise ModelLoadError(f"{MODEL_CONFIG_FILE} is missing beside the weights", path=weights)
    try:
        model = FindingClassifier(**json.loads(config_path.read_text()))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (json.JSONDecodeError, TypeError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"cannot rebuild the classifier: {err}", path=weights) from err
    return model.to(map_location)
