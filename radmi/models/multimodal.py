"""The pretraining network: image encoder + text encoder, returning the feature dict the MI objectives read.

MONAI's ``SupervisedTrainer`` calls it through ``monai.engines.utils.PrepareBatchExtraInput`` as
``network(image, input_ids=..., attention_mask=..., sentence_ids=..., image_view2=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from torch import nn

from radmi.models.image import ImageEncoder
from radmi.models.text import TextEncoder

#: Outputs that need the text encoder's whole-report pass / its sentence pass (isolated sentences).
REPORT_OUTPUTS = ("text_tokens", "text_global")
SENTENCE_OUTPUTS = ("text_sentences", "sentence_mask")
#: text encoder key -> network output key
TEXT_OUTPUTS = {"tokens": "text_tokens", "sentences": "text_sentences", "sentence_mask": "sentence_mask", "global": "text_global"}


def _plain(x: torch.Tensor) -> torch.Tensor:
    # MetaTensor bookkeeping on every conv costs time and carries nothing the losses need
    return x.as_tensor() if isinstance(x, MetaTensor) else x


class ImageTextModel(nn.Module):
    """Joint image-text encoder for local MI, global MI and TVDIM pretraining.

    Args:
        image_encoder: maps ``B x 1 x H x W`` to ``(B x E, B x E x h x w)``.
        text_encoder: maps token tensors to tokens/sentences/sentence_mask/global with the same E.

    ``forward`` returns (shapes as in docs/architecture.md):

    - ``image_global`` B x E, ``image_local`` B x E x h x w;
    - ``text_tokens`` B x T x E, ``text_sentences`` B x K x E, ``sentence_mask`` B x K bool, ``text_global`` B x E;
    - with ``image_view2`` (TVDIM's second augmented view): ``image_global_view2``, ``image_local_view2``.
    """

    def __init__(self, image_encoder: ImageEncoder, text_encoder: TextEncoder) -> None:
        super().__init__()
        if image_encoder.embed_dim != text_encoder.embed_dim:
            raise ValueError(
                f"image and text embeddings differ in size ({image_encoder.embed_dim} vs {text_encoder.embed_dim}); "
                "set ImageEncoder(embed_dim=...) or TextEncoder(embed_dim=...) so they match"
            )
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder

    @property
    def embed_dim(self) -> int:
        return self.image_encoder.embed_dim

    def forward(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence_ids: torch.Tensor,
        image_view2: torch.Tensor | None = None,
        outputs: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode ``image`` (B x 1 x H x W), the report tokens (B x T each) and optionally a second view.

        ``outputs``: the keys the caller reads (e.g. the objective's ``loss.reads``). With sentences encoded in
        isolation the text encoder makes two passes; one whose outputs nobody reads (the whole report's
        ``text_tokens``/``text_global`` for local MI, the sentences for global MI) is skipped and its keys left
        out. None: every output.
        """
        image = _plain(image)
        batch = image.shape[0]
        if image_view2 is not None:
            # one encoder call for both views keeps the GPU busy with one large batch
            both_global, both_local = self.image_encoder(torch.cat([image, _plain(image_view2)], dim=0))
            image_global, image_global_view2 = both_global[:batch], both_global[batch:]
            image_local, image_local_view2 = both_local[:batch], both_local[batch:]
        else:
            image_global, image_local = self.image_encoder(image)
        report = outputs is None or any(key in outputs for key in REPORT_OUTPUTS)
        sentences = outputs is None or any(key in outputs for key in SENTENCE_OUTPUTS)
        text = self.text_encoder(
            _plain(input_ids), _plain(attention_mask), _plain(sentence_ids), report=report, sentences=sentences
        )
        out = {"image_global": image_global, "image_local": image_local}
        for key, name in TEXT_OUTPUTS.items():
            if key in text:
                out[name] = text[key]
        if image_view2 is not None:
            out["image_global_view2"] = image_global_view2
            out["image_local_view2"] = image_local_view2
        return out
