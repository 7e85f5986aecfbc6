"""The text encoder: a Hugging Face BERT-family model giving token, sentence and report embeddings.

``TextEncoder(input_ids, attention_mask, sentence_ids)`` returns a dict:

- ``tokens``: B x T x E, the last hidden states (projected to E when ``embed_dim`` is given);
- ``sentences``: B x K x E, the mean of each sentence's token embeddings (K = ``max_sentences``);
- ``sentence_mask``: B x K bool, True where the report has that sentence;
- ``global``: B x E, the first ([CLS]) token or the mean over all attended tokens.

``sentence_ids`` (B x T int64, from ``radmi.transforms.text.TokenizeReport``) gives each token's sentence index,
-1 for special and padding tokens; sentences at index K or beyond are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radmi.models.heads import ProjectionHead
from radmi.models.hub import OFFLINE_DEFAULT, load_text_model

#: The text model used when a config names none (offline, E = 384).
DEFAULT_TEXT_MODEL = OFFLINE_DEFAULT
POOLINGS = ("cls", "mean")
CONFIG_FILE = "text_encoder.json"
PROJECTION_FILE = "projection.pt"


def pool_sentences(
    tokens: torch.Tensor, sentence_ids: torch.Tensor, max_sentences: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean token embedding per sentence, as one batched matmul with a one-hot assignment.

    Args:
        tokens: B x T x E token embeddings.
        sentence_ids: B x T int, sentence index per token, negative for tokens that belong to no sentence.
        max_sentences: K; tokens of sentences with index >= K are ignored.

    Returns:
        ``(sentences B x K x E, sentence_mask B x K bool)``; rows of missing sentences are zero.
    """
    slots = torch.arange(max_sentences, device=sentence_ids.device)
    assignment = (sentence_ids.unsqueeze(-1) == slots).to(tokens.dtype)  # B x T x K, ids < 0 match no slot
    counts = assignment.sum(dim=1)  # B x K
    sums = torch.bmm(assignment.transpose(1, 2), tokens)  # B x K x E
    sentences = sums / counts.clamp(min=1).unsqueeze(-1)
    return sentences, counts > 0


def _transformer_layers(model: nn.Module) -> nn.ModuleList | None:
    """The model's list of transformer blocks (BERT ``encoder.layer``, DistilBERT ``transformer.layer``, ...)."""
    n_layers = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    return None


class TextEncoder(nn.Module):
    """BERT-family report encoder with sentence pooling.

    Args:
        model: ``"offline:all-MiniLM-L6-v2"`` (default, E = 384), a local model directory, or a hub name such as
            ``emilyalsentzer/Bio_ClinicalBERT`` (resolved by :func:`radmi.models.hub.load_text_model`).
        embed_dim: if given, a linear projection of the hidden size to E; otherwise E is the hidden size.
        max_sentences: K, the number of sentence slots.
        pooling: ``"cls"`` (first token) or ``"mean"`` (attention-masked mean) for the report vector.
        freeze_embeddings: stop gradients into the word/position embeddings.
        freeze_layers: stop gradients into the first n transformer blocks.
        gradient_checkpointing: recompute the transformer blocks in the backward pass to save memory.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_TEXT_MODEL,
        embed_dim: int | None = None,
        max_sentences: int = 16,
        pooling: str = "cls",
        freeze_embeddings: bool = False,
        freeze_layers: int = 0,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_sentences < 1:
            raise ValueError(f"max_sentences must be >= 1, got {max_sentences}")
        self.model_name = str(model)
        self.max_sentences = int(max_sentences)
        self.pooling = pooling
        self.freeze_embeddings = bool(freeze_embeddings)
        self.freeze_layers = int(freeze_layers)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.transformer = load_text_model(model)
        if getattr(self.transformer, "pooler", None) is not None:
            # BERT's pooler is never used here; dropping it keeps every parameter in the graph (needed by DDP)
            self.transformer.pooler = None
        hidden = int(self.transformer.config.hidden_size)
        self.hidden_size = hidden
        self.embed_dim = hidden if embed_dim is None else int(embed_dim)
        self.projection = None if embed_dim is None else ProjectionHead(hidden, self.embed_dim)
        self._freeze()
        if self.gradient_checkpointing:
            self.transformer.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )

    def _freeze(self) -> None:
        if self.freeze_embeddings:
            embeddings = getattr(self.transformer, "embeddings", None)
            if embeddings is None:
                embeddings = self.transformer.get_input_embeddings()
            embeddings.requires_grad_(False)
        if self.freeze_layers > 0:
            layers = _transformer_layers(self.transformer)
            if layers is None:
                raise ValueError(f"cannot find the transformer blocks of {self.model_name} to freeze")
            if self.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={self.freeze_layers} but the model has {len(layers)} layers")
            for layer in layers[: self.freeze_layers]:
                layer.requires_grad_(False)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-serializable)."""
        return {
            "model": self.model_name,
            "embed_dim": None if self.projection is None else self.embed_dim,
            "max_sentences": self.max_sentences,
            "pooling": self.pooling,
            "freeze_embeddings": self.freeze_embeddings,
            "freeze_layers": self.freeze_layers,
            "gradient_checkpointing": self.gradient_checkpointing,
        }

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``input_ids, attention_mask, sentence_ids: B x T`` -> dict of tokens, sentences, sentence_mask, global."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        tokens = hidden if self.projection is None else self.projection(hidden)  # B x T x E
        # a token outside the attention mask never belongs to a sentence, whatever sentence_ids says
        sentence_ids = sentence_ids.masked_fill(attention_mask == 0, -1)
        sentences, sentence_mask = pool_sentences(tokens, sentence_ids, self.max_sentences)
        if self.pooling == "cls":
            report = tokens[:, 0]
        else:
            weights = attention_mask.to(tokens.dtype).unsqueeze(-1)  # B x T x 1
            report = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        return {"tokens": tokens, "sentences": sentences, "sentence_mask": sentence_mask, "global": report}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the transformer (``save_pretrained``), the projection and ``text_encoder.json`` to a folder.

        The saved folder can be given back as ``model=`` (the projection is restored by :func:`load_text_encoder`).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(directory)
        config = dict(self.config, model=str(directory))
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if self.projection is not None:
            torch.save(self.projection.state_dict(), directory / PROJECTION_FILE)
        return directory


def load_text_encoder(directory: str | Path) -> TextEncoder:
    """Rebuild a :class:`TextEncoder` written by :meth:`TextEncoder.save_pretrained` (e.g. ``RUN_DIR/models/text_encoder``)."""
    from radmi.errors import ModelLoadError

    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ModelLoadError(f"{CONFIG_FILE} is missing: not a saved radmi text encoder", path=directory)
    config = json.loads(config_path.read_text())
    config["model"] = str(directory)
    encoder = TextEncoder(**config)
    if encoder.projection is not None:
        state = torch.load(directory / PROJECTION_FILE, map_location="cpu", weights_only=True)
        encoder.projection.load_state_dict(state)
    return encoder
