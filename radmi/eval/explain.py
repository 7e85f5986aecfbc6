"""Per-sentence region heat maps: where did the pretrained model ground each report sentence?

:class:`PretrainedRun` rebuilds a pretraining run (``RUN_DIR/models``: image encoder, text encoder + tokenizer,
``critic.pt``; the objective from ``models/objective.json`` when pretraining wrote one, else from the recipe in
``RUN_DIR/config.json``). Features come from :class:`radmi.models.multimodal.ImageTextModel`'s output dict
(``image_local``, ``text_sentences``, ``sentence_mask``, ``text_global``), whatever the text encoder does inside.
:meth:`PretrainedRun.sentence_maps` scores every (region, sentence) pair with the run's critic,
``LocalMILoss.score_map`` for local MI. TVDIM has no region-sentence objective; its image-text critic is applied
to the local features instead (same embedding space), which is what its grounding column measures. Global MI has
no sentence map (None); :meth:`PretrainedRun.report_map` gives its region-to-report map instead: each region's
local feature against the report's global vector through the global critic (:func:`region_report_scores`).

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
import torch.nn.functional as F  # noqa: E402
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


#: Caption of the single panel drawn for a global-MI run.
REPORT_MAP_CAPTION = "whole report (global MI: each region against the report vector)"
#: The objective's constructor arguments, written beside ``critic.pt`` by newer pretraining runs.
OBJECTIVE_FILE = "objective.json"


def _objective_from_spec(spec: dict, path: Path) -> nn.Module:
    """Build the objective from ``objective.json``: a MONAI config item (``_target_``) or the constructor
    keyword arguments of :class:`radmi.losses.objectives.PretrainObjective` (bare, or under ``"kwargs"``)."""
    from monai.bundle import ConfigParser

    from radmi.losses.objectives import PretrainObjective

    if not isinstance(spec, dict):
        raise ModelLoadError(f"{OBJECTIVE_FILE} must hold a JSON object", path=path)
    try:
        if "_target_" in spec:
            return ConfigParser({"objective": spec}).get_parsed_content("objective", instantiate=True)
        kwargs = spec["kwargs"] if isinstance(spec.get("kwargs"), dict) else spec
        return PretrainObjective(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot rebuild the objective: {err}", path=path) from err


def load_run_objective(run_dir: str | Path, parser=None) -> nn.Module:
    """The pretraining objective of a run, with its trained critic(s) from ``models/critic.pt``.

    ``models/objective.json`` is preferred when present; otherwise ``loss_def`` of the run's ``config.json`` is
    parsed again (runs written before that file existed).

    Args:
        run_dir: a ``radmi pretrain`` run directory.
        parser: the run's ``config.json`` as a MONAI ``ConfigParser`` (parsed here when None).
    """
    run_dir = Path(run_dir)
    models = run_dir / "models"
    spec_path = models / OBJECTIVE_FILE
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text())
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"not valid JSON: {err}", path=spec_path) from err
        objective = _objective_from_spec(spec, spec_path)
    else:
        if parser is None:
            from monai.bundle import ConfigParser

            config_path = run_dir / "config.json"
            if not config_path.is_file():
                raise ModelLoadError("not a radmi pretrain run directory (no config.json)", path=run_dir)
            parser = ConfigParser(json.loads(config_path.read_text()))
        objective = parser.get_parsed_content("loss_def", instantiate=True)
    critic = models / "critic.pt"
    if not critic.is_file():
        raise ModelLoadError("critic.pt is missing", path=models)
    try:
        objective.load_state_dict(torch.load(critic, map_location="cpu", weights_only=True))
    except RuntimeError as err:
        raise ModelLoadError(f"critic.pt does not match the run's objective: {err}", path=critic) from err
    return objective


def _critic_accepts(critic: nn.Module, dim_v: int, dim_s: int) -> bool:
    """Whether ``critic`` can score ``dim_v``-d image features against ``dim_s``-d text features."""
    from radmi.losses.critics import BilinearCritic, ConcatMLPCritic, DotCritic

    if isinstance(critic, DotCritic):
        return dim_v == dim_s
    if isinstance(critic, BilinearCritic):
        return tuple(critic.weight.shape) == (dim_v, dim_s)
    if isinstance(critic, ConcatMLPCritic):
        return critic.first_v.in_features == dim_v and critic.first_s.in_features == dim_s
    return False


def region_report_scores(
    image_local: torch.Tensor, text_global: torch.Tensor, critic: nn.Module | None = None
) -> torch.Tensor:
    """Region-to-report map: each region's local feature scored against its report's global text vector.

    Args:
        image_local: B x E x h x w local image features.
        text_global: B x E' report (global) text vectors.
        critic: the run's image-report critic (``critic.paired``); used when it takes E-d regions and E'-d
            reports. Otherwise (or None) the cosine similarity of the L2-normalized features (needs E = E').

    Returns:
        B x h x w scores (critic logits, or cosines in [-1, 1]).
    """
    batch, _, height, width = image_local.shape
    regions = image_local.flatten(2).transpose(1, 2)  # B x R x E
    report = text_global.unsqueeze(1)  # B x 1 x E'
    if critic is not None and _critic_accepts(critic, regions.shape[-1], report.shape[-1]):
        scores = critic.paired(regions, report)[..., 0]  # B x R
    else:
        scores = (F.normalize(regions, dim=-1) * F.normalize(report, dim=-1)).sum(-1)  # B x R
    return scores.reshape(batch, height, width)


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
        from radmi.models.multimodal import ImageTextModel
        from radmi.models.text import load_text_encoder

        self.run_dir = Path(run_dir)
        models = self.run_dir / "models"
        config_path = self.run_dir / "config.json"
        if not config_path.is_file():
            raise ModelLoadError("not a radmi pretrain run directory (no config.json)", path=self.run_dir)
        parser = ConfigParser(json.loads(config_path.read_text()))
        self.image_size = int(parser.get_parsed_content("image_size"))
        self.max_length = int(parser.get_parsed_content("max_length"))
        self.max_sentences = int(parser.get_parsed_content("max_sentences"))
        self.image_encoder = load_image_encoder(self.run_dir)
        self.text_encoder = load_text_encoder(models / "text_encoder")
        tokenizer_source = models / "text_encoder"
        if not (tokenizer_source / "tokenizer_config.json").is_file():
            tokenizer_source = parser.get_parsed_content("text_model")
        self.tokenizer = load_tokenizer(tokenizer_source)
        self.objective = load_run_objective(self.run_dir, parser)
        self.kind = str(self.objective.kind)
        # the pretraining network's forward gives the feature dict the objectives read (shares the encoders)
        self.network = ImageTextModel(self.image_encoder, self.text_encoder)
        self.device = torch.device(device)
        self.to(self.device).eval()

    @property
    def has_region_maps(self) -> bool:
        """Whether the objective scores regions against sentences (local MI, TVDIM; not global MI)."""
        return bool(self.objective.loss.region_maps)

    @property
    def has_report_map(self) -> bool:
        """True for global MI: its critic scores the region-to-report map (:meth:`report_map`)."""
        return bool(self.objective.loss.report_maps)

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
    def features(self, image: torch.Tensor, sentences: Sequence[str]) -> tuple[dict[str, torch.Tensor], int]:
        """The pretraining network's output dict for one image and its report's sentences.

        Args:
            image: 1 x S x S (or B=1 x 1 x S x S) in [0, 1], S = ``image_size``.
            sentences: the report's sentences (``radmi.data.reports.report_sentences``).

        Returns:
            ``(out, kept)``: :class:`~radmi.models.multimodal.ImageTextModel`'s dict (``image_local`` 1 x E x h x w,
            ``text_sentences`` 1 x K x E, ``sentence_mask`` 1 x K, ``text_global`` 1 x E, ...) and K', the number
            of leading sentences that fit the tokenizer's ``max_length``.
        """
        x = torch.as_tensor(image, dtype=torch.float32)
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        x = (x if x.ndim == 4 else x[None]).to(self.device)
        tokens = self.tokenize(sentences)
        out = self.network(
            x,
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
            sentence_ids=tokens["sentence_ids"].to(self.device),
        )
        return out, int(tokens["kept"])

    @torch.no_grad()
    def report_map(self, image: torch.Tensor, sentences: Sequence[str]) -> np.ndarray | None:
        """Region-to-report scores of a global-MI run (:func:`region_report_scores` with its critic).

        Args:
            image, sentences: as :meth:`features`.

        Returns:
            h x w float32, or None for runs without a global image-report critic (local MI, TVDIM).
        """
        if not self.has_report_map:
            return None
        out, _ = self.features(image, sentences)
        scores = region_report_scores(out["image_local"], out["text_global"], self.objective.loss.critic)
        return scores[0].float().cpu().numpy()

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
        out, kept = self.features(image, sentences)
        local = out["image_local"]
        sentence_features = out["text_sentences"][:, :kept]
        maps = self.objective.loss.sentence_maps(local, sentence_features)  # 1 x K' x h x w
        return maps[0].float().cpu().numpy()


def explain_image(
    run: PretrainedRun,
    image_path: str | Path,
    report_text: str,
    out_path: str | Path,
    boxes_on_stored_image: Sequence[Box] = (),
) -> Path:
    """Load a DICOM/PNG, resize it as the run's inputs, draw the sentence maps (and boxes) to ``out_path``.

    A global-MI run has no sentence maps; its one region-to-report map (:meth:`PretrainedRun.report_map`) is
    drawn as a single panel instead, with every box on it.
    """
    from radmi.data.reports import report_sentences
    from radmi.eval.grounding import boxes_to_input
    from radmi.transforms.dicom import LoadXRay
    from radmi.transforms.image import XRayResize

    image = XRayResize(run.image_size)(LoadXRay()(image_path))
    sentences = report_sentences(report_text)
    maps = run.sentence_maps(image, sentences)
    captions, whole_report = sentences[: len(maps)] if maps is not None else [], False
    if maps is None:
        report = run.report_map(image, sentences) if run.has_report_map else None
        if report is None:
            raise ModelLoadError(f"a {run.kind} MI run has no region map to draw", path=run.run_dir)
        maps, captions, whole_report = report[None], [REPORT_MAP_CAPTION], True
    boxes = []
    if boxes_on_stored_image:
        coords = boxes_to_input(np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes_on_stored_image]), image)
        boxes = [
            Box(*c, label=b.label, sentence_index=0 if whole_report else b.sentence_index)
            for c, b in zip(coords, boxes_on_stored_image, strict=True)
        ]
    return draw_explanation(image[0].numpy(), maps, captions, out_path, boxes)
