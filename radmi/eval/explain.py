"""Per-sentence region heat maps: where did the pretrained model ground each report sentence?

:class:`PretrainedRun` rebuilds a pretraining run (``RUN_DIR/models``: image encoder, text encoder + tokenizer,
``critic.pt``; ``RUN_DIR/config.json``: the objective's settings). :meth:`PretrainedRun.sentence_maps` scores
every (region, sentence) pair with the run's critic, ``LocalMILoss.score_map`` for local MI. TVDIM has no
region-sentence objective; its image-text critic is applied to the local features instead (same embedding
space), which is what its grounding column measures. Global MI has no region map (None).

:func:`draw_explanation` draws the PNG grid: the radiograph, then one panel per sentence with the score map
upsampled (bilinear) over the image, the wrapped sentence as caption and a colour bar; optional boxes.
Rows run downwards (image row 0 at the top), as a radiograph is read.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from radmi.errors import ModelLoadError  # noqa: E402

#: Figure geometry (inches, dots per inch): fixed so the PNG size is known in advance.
PANEL_WIDTH, PANEL_HEIGHT, DPI = 3.2, 4.0, 100
MAX_COLUMNS = 4
CAPTION_WIDTH = 38  # characters per caption line


@dataclass
class Box:
    """A ground-truth box in the displayed image's pixels, with what it shows."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = ""
    sentence_index: int | None = None  # the panel it belongs to (None: drawn on the image panel only)


def figure_size(n_sentences: int) -> tuple[int, int]:
    """PNG ``(width, height)`` in pixels of a grid with ``n_sentences`` sentence panels plus the image."""
    panels = n_sentences + 1
    columns = min(MAX_COLUMNS, panels)
    rows = math.ceil(panels / columns)
    return round(columns * PANEL_WIDTH * DPI), round(rows * PANEL_HEIGHT * DPI)


def _draw_boxes(ax, boxes: Sequence[Box], colour: str = "lime") -> None:
    from matplotlib.patches import Rectangle

    for box in boxes:
        ax.add_patch(
            Rectangle((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0, fill=False, ec=colour, lw=1.5)
        )
        if box.label:
            ax.text(box.x0, box.y0 - 2, box.label, color=colour, fontsize=6, va="bottom")


def draw_explanation(
    image: np.ndarray,
    score_maps: np.ndarray,
    sentences: Sequence[str],
    path: str | Path,
    boxes: Sequence[Box] = (),
    title: str | None = None,
) -> Path:
    """Save the explanation grid as a PNG of size :func:`figure_size` ``(len(sentences))``.

    Args:
        image: H x W radiograph in [0, 1] (bright = dense), row 0 at the top.
        score_maps: K x h x w critic scores (K = len(sentences)), region (0, 0) at the image's top-left.
        sentences: the K sentences (captions).
        path: output PNG.
        boxes: ground-truth boxes in image pixels; a box with ``sentence_index`` k is drawn on panel k too.
        title: figure title.
    """
    image = np.asarray(image, dtype=np.float32)
    maps = np.asarray(score_maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != len(sentences):
        raise ValueError(f"score_maps must be K x h x w with K = {len(sentences)}, got {maps.shape}")
    height, width = image.shape
    width_px, height_px = figure_size(len(sentences))
    columns = min(MAX_COLUMNS, len(sentences) + 1)
    rows = math.ceil((len(sentences) + 1) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width_px / DPI, height_px / DPI), dpi=DPI, squeeze=False)
    # one colour scale for all sentences: critic scores of one image are comparable across sentences
    vmin, vmax = (float(maps.min()), float(maps.max())) if maps.size else (0.0, 1.0)
    extent = (0, width, height, 0)  # origin="upper": image row 0 at the top, maps stretched over the image
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index > len(sentences):
            ax.axis("off")
            continue
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, extent=extent, origin="upper")
        if index == 0:
            ax.set_title("radiograph", fontsize=8)
            _draw_boxes(ax, boxes)
            continue
        k = index - 1
        heat = ax.imshow(
            maps[k],
            cmap="jet",
            alpha=0.45,
            vmin=vmin,
            vmax=vmax,
            extent=extent,
            origin="upper",
            interpolation="bilinear",
        )
        _draw_boxes(ax, [b for b in boxes if b.sentence_index == k])
        caption = "\n".join(textwrap.wrap(f"{k + 1}. {sentences[k]}", CAPTION_WIDTH)[:6])
        ax.set_xlabel(caption, fontsize=7, loc="left")
        bar = fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        bar.set_label("critic score", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size stays figure_size(K)
    plt.close(fig)
    return path


class PretrainedRun(nn.Module):
    """The parts of a pretraining run needed for region x sentence maps.

    Args:
        run_dir: a ``radmi pretrain`` run directory.
        device: where to run.
    """

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from monai.bundle import ConfigParser

        from radmi.models.hub import load_tokenizer
        from radmi.models.image import load_image_encoder
        from radmi.models.text import load_text_encoder

        self.run_dir = Path(run_dir)
        models = self.run_dir / "models"
        config_path = self.run_dir / "config.json"
        if not config_path.is_file():
            raise ModelLoadError("not a radmi pretrain run directory (no config.json)", path=self.run_dir)
        parser = ConfigParser(json.loads(config_path.read_text()))
        self.kind = str(parser.get_parsed_content("objective"))
        self.image_size = int(parser.get_parsed_content("image_size"))
        self.max_length = int(parser.get_parsed_content("max_length"))
        self.max_sentences = int(parser.get_parsed_content("max_sentences"))
        self.image_encoder = load_image_encoder(self.run_dir)
        self.text_encoder = load_text_encoder(models / "text_encoder")
        tokenizer_source = models / "text_encoder"
        if not (tokenizer_source / "tokenizer_config.json").is_file():
            tokenizer_source = parser.get_parsed_content("text_model")
        self.tokenizer = load_tokenizer(tokenizer_source)
        self.objective = parser.get_parsed_content("loss_def", instantiate=True)
        critic = models / "critic.pt"
        if not critic.is_file():
            raise ModelLoadError("critic.pt is missing", path=models)
        try:
            self.objective.load_state_dict(torch.load(critic, map_location="cpu", weights_only=True))
        except RuntimeError as err:
            raise ModelLoadError(f"critic.pt does not match the run's objective: {err}", path=critic) from err
        self.device = torch.device(device)
        self.to(self.device).eval()

    @property
    def has_region_maps(self) -> bool:
        """False for global MI, whose objective never scores regions."""
        return self.kind in ("local", "tvdim")

    def tokenize(self, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
        """Sentences -> ``input_ids``, ``attention_mask``, ``sentence_ids`` (1 x T each) and ``kept`` sentences."""
        from radmi.transforms.text import TokenizeReport

        tokenize = TokenizeReport(self.tokenizer, self.max_length, self.max_sentences)
        input_ids, attention_mask, sentence_ids = tokenize(list(sentences))
        kept = int(sentence_ids.max().item()) + 1 if (sentence_ids >= 0).any() else 0
        return {
            "input_ids": input_ids[None],
            "attention_mask": attention_mask[None],
            "sentence_ids": sentence_ids[None],
            "kept": kept,
        }

    @torch.no_grad()
    def sentence_maps(self, image: torch.Tensor, sentences: Sequence[str]) -> np.ndarray | None:
        """Critic scores of each sentence over the image's regions.

        Args:
            image: 1 x S x S (or B=1 x 1 x S x S) in [0, 1], S = ``image_size``.
            sentences: the report's sentences (``radmi.data.reports.report_sentences``).

        Returns:
            K' x h x w float32 (K' = sentences that fit the tokenizer's ``max_length``), or None for global MI.
        """
        if not self.has_region_maps:
            return None
        x = torch.as_tensor(image, dtype=torch.float32)
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        x = (x if x.ndim == 4 else x[None]).to(self.device)
        tokens = self.tokenize(sentences)
        text = self.text_encoder(
            tokens["input_ids"].to(self.device),
            tokens["attention_mask"].to(self.device),
            tokens["sentence_ids"].to(self.device),
        )
        _, local = self.image_encoder(x)
        sentence_features = text["sentences"][:, : tokens["kept"]]
        loss = self.objective.loss
        if self.kind == "local":
            maps = loss.score_map(local, sentence_features)
        else:  # TVDIM: its image-text critic on regions x sentences
            regions = local.flatten(2).transpose(1, 2)
            maps = loss.inter_critic.paired(regions, sentence_features).transpose(1, 2)
            maps = maps.reshape(1, -1, local.shape[-2], local.shape[-1])
        return maps[0].float().cpu().numpy()


def explain_image(
    run: PretrainedRun,
    image_path: str | Path,
    report_text: str,
    out_path: str | Path,
    boxes_on_stored_image: Sequence[Box] = (),
) -> Path:
    """Load a DICOM/PNG, resize it as the run's inputs, draw the sentence maps (and boxes) to ``out_path``."""
    from radmi.data.reports import report_sentences
    from radmi.eval.grounding import boxes_to_input
    from radmi.transforms.dicom import LoadXRay
    from radmi.transforms.image import XRayResize

    image = XRayResize(run.image_size)(LoadXRay()(image_path))
    sentences = report_sentences(report_text)
    maps = run.sentence_maps(image, sentences)
    if maps is None:
        raise ModelLoadError(f"a {run.kind} MI run has no region x sentence map to draw", path=run.run_dir)
    boxes = []
    if boxes_on_stored_image:
        coords = boxes_to_input(np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes_on_stored_image]), image)
        boxes = [
            Box(*c, label=b.label, sentence_index=b.sentence_index)
            for c, b in zip(coords, boxes_on_stored_image, strict=True)
        ]
    return draw_explanation(image[0].numpy(), maps, sentences[: len(maps)], out_path, boxes)
