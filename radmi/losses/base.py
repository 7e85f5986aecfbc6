"""What every pretraining loss declares, so that the recipe, the metrics and the maps need no per-objective switch.

A loss is a plain ``nn.Module`` whose ``forward`` takes tensors (the network outputs it ``reads``, in that order,
then ``study_ids`` and its identical-text keys) and returns :class:`~radmi.losses.estimators.MIOutput`.
:class:`radmi.losses.objectives.PretrainObjective` adapts any such loss to MONAI's ``loss_function(pred,
targets)``. Adding an objective = one module with one subclass of :class:`ObjectiveLoss` (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

#: kind -> loss class; every :class:`ObjectiveLoss` subclass with a ``kind`` registers itself here.
OBJECTIVES: dict[str, type[ObjectiveLoss]] = {}


def qualified_name(obj: Any) -> str:
    """``module.Class`` of an object's class (a MONAI ``_target_``)."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class ObjectiveLoss(nn.Module):
    """Base class of the pretraining losses.

    Class attributes a subclass sets:
        kind: the short name used in recipes and tables (``local``, ``global``, ``tvdim``).
        reads: the network output keys (``radmi.models.multimodal.ImageTextModel``) passed positionally.
        text_key: the identical-text key it takes as a keyword (``sentence_keys`` B x K or ``report_keys`` B),
            or None.
        image_views: 2 when it needs a second augmented view of each image (``image_view2``).
        region_maps: True when :meth:`sentence_maps` gives region x sentence maps (heat maps, grounding).
        report_maps: True when :meth:`report_maps_of` gives a region x report map.
    """

    kind: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ()
    text_key: ClassVar[str | None] = None
    image_views: ClassVar[int] = 1
    region_maps: ClassVar[bool] = False
    report_maps: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            OBJECTIVES[cls.kind] = cls

    @classmethod
    def from_options(cls, embed_dim: int | None, **options: Any) -> ObjectiveLoss:  # pragma: no cover - abstract
        """Build from the recipe's flat option names (``critic``, ``critic_kwargs``, ``estimator``, ...), ignoring
        the options of other objectives (the Python API of :class:`radmi.losses.objectives.PretrainObjective`)."""
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """A MONAI config item (``{"_target_": ..., ...}``) that rebuilds this loss untrained."""
        raise NotImplementedError

    def pair_scores(
        self, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor]
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """``Bi x Bt`` score of every image against every report (retrieval), from the network's output keys."""
        raise NotImplementedError

    def sentence_maps(self, image_local: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """Critic scores of each report's sentences over its own image: ``B x E x h x w``, ``B x K x E`` ->
        ``B x K x h x w``."""
        raise NotImplementedError(f"the {self.kind} objective gives no region x sentence maps")
