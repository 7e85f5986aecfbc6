"""The backbone registry: a new CNN is one ``register_backbone`` entry, and heads accept any encoder duck-typed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from radmi.models.heads import FindingClassifier
from radmi.models.image import BACKBONES, ImageEncoder, load_image_encoder, register_backbone

TOY = "toy_cnn_for_tests"


def toy_cnn(local_stride: int) -> tuple[nn.Module, int]:
    """``B x 1 x H x W -> B x 6 x H/local_stride x W/local_stride``: one strided convolution."""
    return nn.Sequential(nn.Conv2d(1, 6, kernel_size=local_stride, stride=local_stride), nn.ReLU()), 6


@pytest.fixture
def toy_backbone() -> Iterator[str]:
    register_backbone(TOY)(toy_cnn)
    try:
        yield TOY
    finally:
        BACKBONES.pop(TOY)


def test_builtin_backbones_are_registered() -> None:
    assert {"resnet18", "resnet34", "resnet50", "densenet121"} <= set(BACKBONES)
    assert BACKBONES["densenet121"].plain_state_prefix == ""
    assert BACKBONES["resnet18"].plain_state_prefix == "features."


@pytest.mark.parametrize("stride", [16, 32])
def test_encoder_from_a_registered_toy_backbone(toy_backbone: str, stride: int) -> None:
    encoder = ImageEncoder(backbone=toy_backbone, embed_dim=5, local_stride=stride).eval()
    global_embedding, local = encoder(torch.rand(2, 1, 64, 96))
    assert global_embedding.shape == (2, 5)
    assert local.shape == (2, 5, 64 // stride, 96 // stride)
    assert encoder.feature_channels == 6
    assert set(encoder.state_dict()) == {
        "features.0.weight",
        "features.0.bias",
        "local_projection.weight",
        "local_projection.bias",
    }


def test_toy_encoder_round_trips_and_feeds_the_classifier(toy_backbone: str, tmp_path) -> None:
    encoder = ImageEncoder(backbone=toy_backbone, embed_dim=4, local_stride=32)
    encoder.save(tmp_path)
    loaded = load_image_encoder(tmp_path)
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    classifier = FindingClassifier(
        {"backbone": toy_backbone, "embed_dim": 4, "local_stride": 32}, num_labels=3
    )
    assert classifier(torch.rand(2, 1, 64, 64)).shape == (2, 3)


def test_registering_a_name_twice_is_an_error(toy_backbone: str) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(toy_backbone)(toy_cnn)


def test_unknown_backbone_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        ImageEncoder(backbone="no_such_cnn")


class _DuckEncoder(nn.Module):
    """Not an ImageEncoder: a mean-pooling stand-in with ``embed_dim`` and ``config``."""

    embed_dim = 7

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, self.embed_dim, kernel_size=8, stride=8)

    @property
    def config(self) -> dict:
        return {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local = self.proj(x)
        return local.mean(dim=(2, 3)), local


def test_classifier_takes_a_duck_typed_encoder() -> None:
    classifier = FindingClassifier(_DuckEncoder(), num_labels=2, edema_classes=4)
    out = classifier.forward_all(torch.rand(3, 1, 32, 32))
    assert out["findings"].shape == (3, 2) and out["edema"].shape == (3, 4)


def test_classifier_rejects_a_module_without_embed_dim() -> None:
    with pytest.raises(TypeError, match="embed_dim"):
        FindingClassifier(nn.Linear(2, 2))
