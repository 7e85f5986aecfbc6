"""Image and text encoders, heads, and the image-text pretraining network.

Names are imported on first use (:mod:`radmi.lazy_exports`), so a command that only needs a constant such as
``OFFLINE_DEFAULT`` does not import torch and transformers.
"""

from __future__ import annotations

from radmi.lazy_exports import lazy_exports

_EXPORTS = {
    "FindingClassifier": "heads",
    "ProjectionHead": "heads",
    "load_finding_classifier": "heads",
    "CLINICAL_BERT": "hub",
    "OFFLINE_DEFAULT": "hub",
    "load_text_model": "hub",
    "load_tokenizer": "hub",
    "resolve_pretrained": "hub",
    "BACKBONES": "image",
    "ImageEncoder": "image",
    "load_image_encoder": "image",
    "register_backbone": "image",
    "ImageTextModel": "multimodal",
    "TextEncoder": "text",
    "load_text_encoder": "text",
    "pool_sentences": "text",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
