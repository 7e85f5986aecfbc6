"""Image and text encoders, heads, and the image-text pretraining network."""

from radmi.models.heads import FindingClassifier, ProjectionHead, load_finding_classifier
from radmi.models.hub import (
    CLINICAL_BERT,
    OFFLINE_DEFAULT,
    load_text_model,
    load_tokenizer,
    resolve_pretrained,
)
from radmi.models.image import BACKBONES, ImageEncoder, load_image_encoder, register_backbone
from radmi.models.multimodal import ImageTextModel
from radmi.models.text import TextEncoder, load_text_encoder, pool_sentences

__all__ = [
    "BACKBONES",
    "CLINICAL_BERT",
    "OFFLINE_DEFAULT",
    "FindingClassifier",
    "ImageEncoder",
    "ImageTextModel",
    "ProjectionHead",
    "TextEncoder",
    "load_finding_classifier",
    "load_image_encoder",
    "load_text_encoder",
    "load_text_model",
    "load_tokenizer",
    "pool_sentences",
    "register_backbone",
    "resolve_pretrained",
]
