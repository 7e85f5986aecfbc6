"""The image encoder: a MONAI CNN that maps a radiograph to one global vector and a map of local vectors.

``ImageEncoder(x: B x 1 x H x W) -> (global B x E, local B x E x h x w)`` where ``h = H / local_stride`` and
``w = W / local_stride`` (rounded up by the convolutions' padding). The backbone comes from the registry
:data:`BACKBONES` (MONAI's 2-D ResNet 18/34/50 and DenseNet-121 with one input channel, their classification
layers dropped so that every parameter is used); a new CNN is one :func:`register_backbone` entry::

    @register_backbone("tiny_cnn")
    def tiny_cnn(local_stride: int) -> tuple[nn.Module, int]:
        # B x 1 x H x W -> B x C x H/local_stride x W/local_stride, and C
        return nn.Sequential(nn.Conv2d(1, 8, local_stride, stride=local_stride), nn.ReLU()), 8

A run directory stores the encoder as ``models/image_encoder.pt`` (plain state dict) and
``models/image_encoder.json`` (the constructor keyword arguments); :func:`load_image_encoder` rebuilds it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import DenseNet121, resnet18, resnet34, resnet50
from torch import nn

from radmi.errors import ModelLoadError

#: Strides (input pixels per local feature) at which the local map may be taken.
LOCAL_STRIDES = (16, 32)
WEIGHTS_FILE = "image_encoder.pt"
CONFIG_FILE = "image_encoder.json"

#: ``build(local_stride) -> (features, C)``: ``features`` maps ``B x 1 x H x W`` to ``B x C x h x w`` with
#: ``h = ceil(H / local_stride)``; it may raise ``ValueError`` for a stride of :data:`LOCAL_STRIDES` it lacks.
BackboneFactory = Callable[[int], tuple[nn.Module, int]]


@dataclass(frozen=True)
class Backbone:
    """One registry entry.

    Attributes:
        build: the factory, see :data:`BackboneFactory`.
        plain_state_prefix: what to prepend to the keys of the source network's own state dict (e.g. a MONAI
            ``resnet18().state_dict()``) to get ``ImageEncoder`` keys, so ``pretrained_path`` accepts one;
            ``"features."`` when the factory returns the network's top-level modules.
    """

    build: BackboneFactory
    plain_state_prefix: str = "features."


#: The backbones :class:`ImageEncoder` accepts, by name; add one with :func:`register_backbone`.
BACKBONES: dict[str, Backbone] = {}


def register_backbone(
    name: str, *, plain_state_prefix: str = "features."
) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator registering ``factory(local_stride) -> (features B x C x h x w, C)`` as backbone ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def register(factory: BackboneFactory) -> BackboneFactory:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        BACKBONES[name] = Backbone(factory, plain_state_prefix)
        return factory

    return register


def _dilate(stage: nn.Module) -> None:
    """Turn a stride-2 stage into a stride-1 stage with dilated 3 x 3 convolutions (same receptive field).

    The strided convolutions (3 x 3 and the 1 x 1 shortcut) get stride 1; every other 3 x 3 convolution gets
    dilation 2, as in DeepLab's output-stride-16 ResNets. No parameter changes shape, so weights still load.
    """
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            if module.stride != (1, 1):
                module.stride = (1, 1)
            elif module.kernel_size == (3, 3):
                module.dilation, module.padding = (2, 2), (2, 2)


def _resnet_features(
    factory: Callable[..., nn.Module], channels: int, local_stride: int
) -> tuple[nn.Sequential, int]:
    """MONAI ResNet without its classifier, ending at ``local_stride``; returns (features, channels)."""
    # conv1 stride 2 + max pool gives the usual 1/4 stem, so layer3 ends at 1/16 and layer4 at 1/32
    net = factory(spatial_dims=2, n_input_channels=1, conv1_t_size=7, conv1_t_stride=2, feed_forward=False)
    if local_stride == 16:
        _dilate(net.layer4)
    names = ("conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4")
    features = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in names))
    return features, channels


for _name, _factory, _channels in (
    ("resnet18", resnet18, 512),
    ("resnet34", resnet34, 512),
    ("resnet50", resnet50, 2048),
):
    register_backbone(_name)(partial(_resnet_features, _factory, _channels))
del _name, _factory, _channels


# DenseNet's own state dict already has its stages under "features."
@register_backbone("densenet121", plain_state_prefix="")
def _densenet_features(local_stride: int) -> tuple[nn.Sequential, int]:
    """MONAI DenseNet-121 features plus the ReLU of its classifier, ending at ``local_stride``."""
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    if local_stride == 16:
        net.features.transition3.pool = nn.Identity()  # the last halving of the resolution
        _dilate(net.features.denseblock4)
    stages = [*net.features.named_children(), ("relu5", nn.ReLU(inplace=False))]
    return nn.Sequential(OrderedDict(stages)), 1024


class ImageEncoder(nn.Module):
    """CNN image encoder returning a global embedding and a local feature map.

    The backbone's last feature map (``C x h x w``) is projected to E by a 1 x 1 convolution: that is the local
    map, one E-vector per region. The global embedding is the mean of the local map over its regions (the
    same as average pooling then a linear layer), so every parameter is trained by local, global and TVDIM
    objectives alike and the downstream classifier reads the space the pretraining shaped.

    Args:
        backbone: a name in :data:`BACKBONES` (built in: MONAI ``ResNet`` 18/34/50 or ``DenseNet121``, 2-D,
            one channel; more with :func:`register_backbone`).
        embed_dim: E, the size of both the global and the local embeddings.
        local_stride: input pixels per region: 32 is the backbone as designed (224 px -> 7 x 7 regions); 16
            removes the last stage's down-sampling and dilates its 3 x 3 convolutions instead (224 px ->
            14 x 14 regions, the same weights, about 4x the last stage's compute).
        pretrained_path: optional weights to start from: an ``ImageEncoder`` state dict / run directory (all keys
            must match), or a plain MONAI backbone state dict (matched by name, the classifier ignored).

    Shapes:
        input ``B x 1 x H x W`` float (intensities in [0, 1]); output ``(B x E, B x E x h x w)`` with
        ``h = ceil(H / local_stride)``. ``torch.channels_last`` inputs stay channels-last through the network.
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
            raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
        if local_stride not in LOCAL_STRIDES:
            raise ValueError(f"local_stride must be one of {LOCAL_STRIDES}, got {local_stride!r}")
        self.backbone_name = backbone
        self.embed_dim = int(embed_dim)
        self.local_stride = int(local_stride)
        self.features, self.feature_channels = BACKBONES[backbone].build(self.local_stride)
        self.local_projection = nn.Conv2d(self.feature_channels, self.embed_dim, kernel_size=1)
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
        local = self.local_projection(self.features(x))
        return local.mean(dim=(2, 3)), local

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
        # a plain backbone state dict (e.g. MONAI's): ResNet keys sit at the top level, DenseNet's under "features."
        prefix = BACKBONES[self.backbone_name].plain_state_prefix
        mapped = {prefix + key: value for key, value in state.items() if prefix + key in own_keys}
        backbone_keys = {k for k in own_keys if k.startswith("features.")}
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
