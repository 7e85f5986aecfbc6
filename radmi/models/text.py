"""The text encoder: a Hugging Face BERT-family model giving token, sentence and report embeddings.

``TextEncoder(input_ids, attention_mask, sentence_ids)`` returns a dict:

- ``tokens``: B x T x E, the last hidden states (projected to E when ``embed_dim`` is given);
- ``sentences``: B x K x E, the mean of each sentence's token embeddings (K = ``max_sentences``). With
  ``sentence_context="isolated"`` (the default) each sentence is encoded on its own, as ``[CLS] sentence [SEP]``,
  so its vector depends on that sentence's tokens alone; with ``"report"`` the tokens come from one pass over the
  whole report and every sentence vector carries the rest of the report;
- ``sentence_mask``: B x K bool, True where the report has that sentence;
- ``global``: B x E, the first ([CLS]) token or the mean over all attended tokens of the whole-report pass
  (full context in both modes).

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
SENTENCE_CONTEXTS = ("isolated", "report")
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


def sentence_batch(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_ids: torch.Tensor, max_sentences: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-batch the sentences of B reports as N short sequences, each framed like a one-sentence report.

    Each sentence is wrapped in its report's own first and closing special tokens (``[CLS] ... [SEP]`` for
    BERT; a report whose first or closing token belongs to a sentence gets no framing on that side), so the
    model sees it exactly as it would see that sentence tokenized alone. Position ids restart per sentence.

    Args:
        input_ids, attention_mask: B x T int64, as from ``radmi.transforms.text.TokenizeReport``.
        sentence_ids: B x T int64, each token's sentence index, negative for special and padding tokens.
        max_sentences: K; sentences with index >= K are left out.

    Returns:
        ``(ids N x L, mask N x L, text_mask N x L bool, slot N)``: the framed sentences (N present sentences, L
        the longest plus framing), their attention mask, which positions hold the sentence's own tokens (for
        pooling), and each row's flat ``b * K + k`` slot.
    """
    batch, length = input_ids.shape
    slots = torch.arange(max_sentences, device=input_ids.device)
    sentence_ids = sentence_ids.masked_fill(attention_mask == 0, -1)
    member = sentence_ids.unsqueeze(-1) == slots  # B x T x K
    counts = member.sum(dim=1)  # B x K
    position = (member.cumsum(dim=1) - 1).masked_fill(~member, 0).sum(-1)  # B x T, index within its sentence
    last = (attention_mask.sum(dim=1) - 1).clamp(min=0)  # B, the closing token's index
    opener = input_ids[:, 0]
    closer = input_ids.gather(1, last.unsqueeze(1)).squeeze(1)
    has_opener = sentence_ids[:, 0] < 0
    has_closer = sentence_ids.gather(1, last.unsqueeze(1)).squeeze(1) < 0
    width = int(counts.max()) + 2 if counts.numel() else 2
    flat = torch.zeros(batch * max_sentences, width, dtype=input_ids.dtype, device=input_ids.device)
    text_mask = torch.zeros(batch * max_sentences, width, dtype=torch.bool, device=input_ids.device)
    in_sentence = (sentence_ids >= 0) & (sentence_ids < max_sentences)
    rows = (torch.arange(batch, device=input_ids.device).unsqueeze(1) * max_sentences + sentence_ids)[in_sentence]
    offset = has_opener.long().unsqueeze(1).expand(-1, length)[in_sentence]
    cols = position[in_sentence] + offset
    flat[rows, cols] = input_ids[in_sentence]
    text_mask[rows, cols] = True
    start = has_opener.long().unsqueeze(1)  # B x 1
    row_counts = counts.view(-1)
    # framing: the opener at column 0, the closer right after the sentence
    opener_rows = has_opener.repeat_interleave(max_sentences)
    flat[:, 0] = torch.where(opener_rows, opener.repeat_interleave(max_sentences), flat[:, 0])
    closer_col = (start.expand(-1, max_sentences).reshape(-1) + row_counts).clamp(max=width - 1)
    closer_rows = has_closer.repeat_interleave(max_sentences) & (row_counts > 0)
    every = torch.arange(batch * max_sentences, device=input_ids.device)
    flat[every[closer_rows], closer_col[closer_rows]] = closer.repeat_interleave(max_sentences)[closer_rows]
    lengths = row_counts + opener_rows.long() + closer_rows.long()
    mask = (torch.arange(width, device=input_ids.device) < lengths.unsqueeze(1)).to(attention_mask.dtype)
    present = torch.nonzero(row_counts > 0).squeeze(1)
    return flat[present], mask[present], text_mask[present], present


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
        sentence_context: ``"isolated"`` (default): each sentence is encoded alone (:func:`sentence_batch`, one
            extra transformer pass over the re-batched sentences), so its vector depends on its own tokens only;
            ``"report"``: sentence vectors pool the tokens of the whole-report pass (cheaper, but each one carries
            the rest of the report, which lets a local objective match whole reports; docs/methods.md).
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
        sentence_context: str = "isolated",
    ) -> None:
        super().__init__()
        if sentence_context not in SENTENCE_CONTEXTS:
            raise ValueError(f"sentence_context must be one of {SENTENCE_CONTEXTS}, got {sentence_context!r}")
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
        self.sentence_context = sentence_context
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
            "sentence_context": self.sentence_context,
        }

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence_ids: torch.Tensor,
        report: bool = True,
        sentences: bool = True,
    ) -> dict[str, torch.Tensor]:
        """``input_ids, attention_mask, sentence_ids: B x T`` -> dict of tokens, sentences, sentence_mask, global.

        In isolated mode each pass runs only when its outputs are wanted: ``report=False`` skips the
        whole-report pass (no ``tokens``, ``global``), ``sentences=False`` the sentence pass (no ``sentences``,
        ``sentence_mask``). In report mode one pass gives everything.
        """
        # a token outside the attention mask never belongs to a sentence, whatever sentence_ids says
        sentence_ids = sentence_ids.masked_fill(attention_mask == 0, -1)
        out: dict[str, torch.Tensor] = {}
        if self.sentence_context == "isolated" and sentences:
            out["sentences"], out["sentence_mask"] = self._isolated_sentences(
                input_ids, attention_mask, sentence_ids
            )
        if self.sentence_context == "isolated" and not report:
            return out
        tokens = self._encode(input_ids, attention_mask)  # B x T x E
        if self.sentence_context == "report":
            out["sentences"], out["sentence_mask"] = pool_sentences(tokens, sentence_ids, self.max_sentences)
        if self.pooling == "cls":
            out["global"] = tokens[:, 0]
        else:
            weights = attention_mask.to(tokens.dtype).unsqueeze(-1)  # B x T x 1
            out["global"] = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        out["tokens"] = tokens
        return out

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``N x L`` ids and mask -> ``N x L x E`` (projected) last hidden states."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden if self.projection is None else self.projection(hidden)

    def _isolated_sentences(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sentence_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``B x T`` inputs -> ``(B x K x E, B x K bool)``, every sentence encoded on its own."""
        batch = input_ids.shape[0]
        ids, mask, text_mask, slot = sentence_batch(input_ids, attention_mask, sentence_ids, self.max_sentences)
        sentence_mask = torch.zeros(batch * self.max_sentences, dtype=torch.bool, device=input_ids.device)
        sentence_mask[slot] = True
        if ids.shape[0] == 0:
            empty = torch.zeros(batch, self.max_sentences, self.embed_dim, device=input_ids.device)
            return empty, sentence_mask.view(batch, -1)
        hidden = self._encode(ids, mask)  # N x L x E
        weights = text_mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)  # N x E
        sentences = pooled.new_zeros(batch * self.max_sentences, pooled.shape[-1]).index_copy(0, slot, pooled)
        return sentences.view(batch, self.max_sentences, -1), sentence_mask.view(batch, -1)

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
    # encoders saved before sentence_context existed pooled sentences from the whole-report pass
    config.setdefault("sentence_context", "report")
    encoder = TextEncoder(**config)
    if encoder.projection is not None:
        state = torch.load(directory / PROJECTION_FILE, map_location="cpu", weights_only=True)
        encoder.projection.load_state_dict(state)
    return encoder
