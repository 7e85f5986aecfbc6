"""The image encoder: a MONAI CNN that maps a radiograph to one global vector and a map of local vectors.

``ImageEncoder(x: B x 1 x H x W) -> (global B x E, local B x E x h x w)`` where ``h = H / local_stride`` and
``w = W / local_stride`` (rounded up by the convolutions' padding). The backbone is MONAI's 2-D ResNet or
DenseNet-121 with one input channel; its classification layer is dropped so that every parameter is used.

A run directory stores the encoder as ``models/image_encoder.pt`` (plain state dict) and
``models/image_encoder.json`` (the constructor keyword arguments); :func:`load_image_encoder` rebuilds it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import DenseNet121, resnet18, resnet34, resnet50
from torch import nn

from radmi.errors import ModelLoadError

#: Backbone names accepted by :class:`ImageEncoder`.
BACKBONES = ("resnet18", "resnet34", "resnet50", "densenet121")
#: Strides (input pixels per local feature) at which the local map may be taken.
LOCAL_STRIDES = (16, 32)
WEIGHTS_FILE = "image_encoder.pt"
CONFIG_FILE = "image_encoder.json"


def _resnet_stages(backbone: str, local_stride: int) -> tuple[nn.Module, nn.Module, int, int]:
    """Split a MONAI ResNet into (input -> local map, local map -> last map, local channels, last channels)."""
    factory = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}[backbone]
    # conv1 stride 2 + max pool gives the usual 1/4 stem, so layer3 ends at 1/16 and layer4 at 1/32
    net = factory(spatial_dims=2, n_input_channels=1, conv1_t_size=7, conv1_t_stride=2, feed_forward=False)
    stages = [
        ("conv1", net.conv1),
        ("bn1", net.bn1),
        ("act", net.act),
        ("maxpool", net.maxpool),
        ("layer1", net.layer1),
        ("layer2", net.layer2),
        ("layer3", net.layer3),
        ("layer4", net.layer4),
    ]
    expansion = 4 if backbone == "resnet50" else 1
    channels_16, channels_32 = 256 * expansion, 512 * expansion
    split = len(stages) - 1 if local_stride == 16 else len(stages)
    to_local = nn.Sequential(OrderedDict(stages[:split]))
    to_last = nn.Sequential(OrderedDict(stages[split:]))
    return to_local, to_last, (channels_16 if local_stride == 16 else channels_32), channels_32


def _densenet_stages(local_stride: int) -> tuple[nn.Module, nn.Module, int, int]:
    """Split MONAI's DenseNet-121 the same way; the final ReLU of its classifier is kept on the last map."""
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    stages = list(net.features.named_children()) + [("relu5", nn.ReLU(inplace=False))]
    # denseblock3 ends at 1/16 (1024 channels); transition3 halves the size to 1/32
    split = [name for name, _ in stages].index("transition3") if local_stride == 16 else len(stages)
    to_local = nn.Sequential(OrderedDict(stages[:split]))
    to_last = nn.Sequential(OrderedDict(stages[split:]))
    return to_local, to_last, 1024, 1024


class ImageEncoder(nn.Module):
    """CNN image encoder returning a global embedding and a local feature map.

    Args:
        backbone: one of :data:`BACKBONES` (MONAI ``ResNet`` 18/34/50 or ``DenseNet121``, 2-D, one channel).
        embed_dim: E, the size of both the global and the local embeddings.
        local_stride: 16 or 32; the local map is taken after the backbone stage that reduces the input by this
            factor (a 224 x 224 input gives 14 x 14 or 7 x 7 regions) and projected to E by a 1 x 1 convolution.
        pretrained_path: optional weights to start from: an ``ImageEncoder`` state dict / run directory (all keys
            must match), or a plain MONAI backbone state dict (matched by name, the classifier ignored).

    Shapes:
        input ``B x 1 x H x W`` float (intensities in [0, 1]); output ``(B x E, B x E x h x w)``.
        ``torch.channels_last`` inputs stay channels-last through the convolutions.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        embed_dim: int = 768,
        local_stride: int = 16,
        pretrained_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if local_stride not in LOCAL_STRIDES:
            raise ValueError(f"local_stride must be one of {LOCAL_STRIDES}, got {local_stride!r}")
        self.backbone_name = backbone
        self.embed_dim = int(embed_dim)
        self.local_stride = int(local_stride)
        if backbone == "densenet121":
            self.to_local, self.to_last, local_channels, last_channels = _densenet_stages(local_stride)
        else:
            self.to_local, self.to_last, local_channels, last_channels = _resnet_stages(
                backbone, local_stride
            )
        self.local_channels = local_channels
        self.last_channels = last_channels
        self.local_projection = nn.Conv2d(local_channels, self.embed_dim, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.global_projection = nn.Linear(last_channels, self.embed_dim)
        if pretrained_path is not None:
            self._load_pretrained(pretrained_path)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this architecture (JSON-serializable)."""
        return {
            "backbone": self.backbone_name,
            "embed_dim": self.embed_dim,
            "local_stride": self.local_stride,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: B x 1 x H x W`` -> ``(global B x E, local B x E x h x w)``."""
        local_features = self.to_local(x)
        last_features = self.to_last(local_features)
        local = self.local_projection(local_features)
        pooled = torch.flatten(self.pool(last_features), 1)
        return self.global_projection(pooled), local

    # ---- persistence -------------------------------------------------------------------------------------
    def save(self, models_dir: str | Path) -> Path:
        """Write ``image_encoder.pt`` (state dict) and ``image_encoder.json`` (kwargs) into ``models_dir``."""
        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        weights = models_dir / WEIGHTS_FILE
        torch.save(self.state_dict(), weights)
        (models_dir / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n")
        return weights

    def _load_pretrained(self, path: str | Path) -> None:
        weights = _find_weights(path)
        state = _read_state_dict(weights)
        own_keys = set(self.state_dict())
        if set(state) == own_keys:
            self.load_state_dict(state)
            return
        # a plain MONAI backbone state dict: map its names onto our two stages
        mapped = {}
        for module in (self.to_local, self.to_last):
            prefix = "to_local." if module is self.to_local else "to_last."
            for key in module.state_dict():
                source = key if self.backbone_name != "densenet121" else f"features.{key}"
                if source in state:
                    mapped[prefix + key] = state[source]
        backbone_keys = {k for k in own_keys if k.startswith(("to_local.", "to_last."))}
        missing = sorted(backbone_keys - set(mapped))
        if missing:
            raise ModelLoadError(
                f"weights match neither an ImageEncoder({self.backbone_name}) nor a MONAI {self.backbone_name} "
                f"backbone ({len(missing)} backbone tensors missing, e.g. {missing[0]})",
                path=weights,
            )
        try:
            self.load_state_dict(mapped, strict=False)
        except RuntimeError as err:
            raise ModelLoadError(f"weights do not fit the backbone: {err}", path=weights) from err


def _find_weights(path: str | Path) -> Path:
    """Accept a run directory, its ``models/`` folder or the ``.pt`` file itself."""
    path = Path(path)
    for candidate in (path, path / WEIGHTS_FILE, path / "models" / WEIGHTS_FILE):
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"no image encoder weights found (looked for {WEIGHTS_FILE} and models/{WEIGHTS_FILE})", path=path
    )


def _read_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise ModelLoadError(f"cannot read weights ({type(err).__name__}: {err})", path=weights) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError("file is not a plain state dict of tensors", path=weights)
    return state


def load_image_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> ImageEncoder:
    """Rebuild an :class:`ImageEncoder` from a run directory, its ``models/`` folder or ``image_encoder.pt``.

    The constructor kwargs come from ``image_encoder.json`` beside the weights.
    """
    weights = _find_weights(path)
    config_path = weights.with_name(CONFIG_FILE)
    if not config_path.is_file():
        raise ModelLoadError(
            f"{CONFIG_FILE} (the encoder's constructor arguments) is missing beside the weights", path=weights
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"invalid JSON: {err}", path=config_path) from err
    config.pop("pretrained_path", None)
    try:
        encoder = ImageEncoder(**config)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"invalid encoder arguments: {err}", path=config_path) from err
    state = _read_state_dict(weights)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ModelLoadError(f"weights do not match {config}: {err}", path=weights) from err
    return encoder.to(map_location)
