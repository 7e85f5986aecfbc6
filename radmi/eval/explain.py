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

:func:`draw_explanation` draws the PNG: the radiograph, then one cell per sentence, in two columns with no empty
cell: the score map upsampled (bilinear) over the image, with the wrapped sentence beside it; one shared colour
bar; optional ground-truth boxes, numbered, with their labels in the text; an R/L marker from the DICOM's
ViewPosition and PatientOrientation (:func:`orientation_marker`). Rows run downwards (image row 0 at the top),
as a radiograph is read.
"""

from __future__ import annotations

import json
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

#: Figure geometry, in inches (``DPI`` dots per inch): fixed, so the PNG size is known in advance
#: (:func:`figure_size`). Each sentence gets a cell: its square map panel with the wrapped sentence beside it.
DPI = 100
MAP_SIDE = 2.4  # side of a map panel
TEXT_GAP = 0.12  # between a map and its text
TEXT_WIDTH = 2.9  # the text column beside a map
CELL_WIDTH = MAP_SIDE + TEXT_GAP + TEXT_WIDTH
COLUMN_GAP, ROW_GAP, MARGIN = 0.3, 0.25, 0.15
COLOUR_BAR_BLOCK = 0.8  # the shared colour bar at the bottom: bar, tick labels and label
COLOUR_BAR_HEIGHT = 0.16
TITLE_BLOCK = 0.45
#: Height of the caption under the radiograph when it spans two rows (an even number of sentences).
RADIOGRAPH_CAPTION = 1.1
#: Text size in points, relative to the panels: a map panel is as tall as this many lines of text.
LINES_PER_PANEL = 17
FONT_SIZE = round(MAP_SIDE * 72 / LINES_PER_PANEL, 1)  # 10.2 pt
#: Average glyph width of the sans-serif font, in units of the font size (for wrapping).
_GLYPH_WIDTH = 0.56
#: Characters per text line beside a map.
CAPTION_WIDTH = int(TEXT_WIDTH * 72 / (_GLYPH_WIDTH * FONT_SIZE))
#: Lines of text that fit beside a map (longer text is cut with "...").
CAPTION_LINES = int(MAP_SIDE * 72 / (1.2 * FONT_SIZE))
#: Colour of the ground-truth boxes and their number tags.
BOX_COLOUR = "lime"


@dataclass
class Box:
    """A ground-truth box in the displayed image's pixels, with what it shows."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = ""
    sentence_index: int | None = None  # the panel it belongs to (None: drawn on the image panel only)


@dataclass(frozen=True)
class OrientationMarker:
    """Where the patient's right is on the displayed image (see :func:`orientation_marker`).

    Attributes:
        text: ``"R"`` (read from PatientOrientation), ``"R?"`` (assumed), or None (no marker is drawn).
        side: ``"left"`` or ``"right"``: the viewer's side on which the marker is drawn.
        note: one line for the picture's caption saying where the marker comes from.
    """

    text: str | None
    side: str = "left"
    note: str = ""


#: ViewPosition values (first word) of frontal chest radiographs.
FRONTAL_VIEWS = ("PA", "AP")


def _orientation_values(patient_orientation) -> list[str]:
    if patient_orientation is None:
        return []
    if isinstance(patient_orientation, str):
        values = patient_orientation.replace("/", "\\").split("\\")
    else:
        values = [str(v) for v in patient_orientation]
    return [v.strip().upper() for v in values if str(v).strip()]


def orientation_marker(view_position: str | None, patient_orientation=None) -> OrientationMarker:
    """The R/L marker of a chest radiograph, from its ViewPosition and PatientOrientation (0020,0020).

    PatientOrientation's first value is the patient direction of the image rows, i.e. towards the right edge
    of the displayed image. ``L`` there (``["L", "F"]``, the standard display of a PA or AP radiograph) puts
    the patient's right on the viewer's left; ``R`` (a flipped image) on the viewer's right. The marker then
    reads ``R``, drawn at the top corner on the patient's right side.

    What is assumed when that is not available:

    - a frontal view (ViewPosition PA or AP) without PatientOrientation, or with one whose row direction is
      neither L nor R (such a tag contradicts a frontal view): the standard display is **assumed**, and the
      marker reads ``R?`` on the viewer's left. The question mark says it was not read from the file: an
      image stored flipped would show it on the wrong side.
    - a lateral or oblique view (any other ViewPosition): no R/L marker; left and right do not run across
      such an image, whatever PatientOrientation says.
    - neither a view nor a row direction of L or R (e.g. a PNG/JPG without a DICOM header): no marker, rather
      than a guess.

    Args:
        view_position: DICOM ViewPosition (``"PA"``, ``"AP"``, ``"LATERAL"``, ``"LL"``, ...), or None/empty.
        patient_orientation: DICOM PatientOrientation: two values (``["L", "F"]``), a ``"L\\F"`` string, or None.
    """
    view = (view_position or "").strip().upper()
    first_word = view.split()[0] if view else ""
    values = _orientation_values(patient_orientation)
    row_direction = values[0][:1] if values else ""
    shown = "\\".join(values)
    if view and first_word not in FRONTAL_VIEWS:
        return OrientationMarker(None, note=f"no R/L marker: {view} view (not frontal)")
    if row_direction in ("L", "R"):
        side = "left" if row_direction == "L" else "right"
        return OrientationMarker("R", side, f"R: patient's right (PatientOrientation {shown})")
    if first_word in FRONTAL_VIEWS:
        why = f"PatientOrientation {shown} gives no left-right" if values else "no PatientOrientation"
        return OrientationMarker(
            "R?", "left", f"R?: assumed, standard display of the {first_word} view ({why})"
        )
    return OrientationMarker(None, note="no R/L marker: view and orientation unknown")


def _layout(n_sentences: int) -> tuple[int, int, int]:
    """``(columns, rows, radiograph_rows)`` of the cell grid: the radiograph, then one cell per sentence.

    Two columns of cells; the radiograph takes the first cell, or the first two rows of the first column when
    the sentence count is even, so that every cell of the grid is used (no empty panel).
    """
    if n_sentences == 0:
        return 1, 1, 1
    radiograph_rows = 2 if n_sentences % 2 == 0 else 1
    return 2, (n_sentences + radiograph_rows) // 2, radiograph_rows


def _figure_inches(n_sentences: int, title: bool = False) -> tuple[float, float]:
    columns, rows, _ = _layout(n_sentences)
    width = 2 * MARGIN + columns * CELL_WIDTH + (columns - 1) * COLUMN_GAP
    height = 2 * MARGIN + rows * MAP_SIDE + (rows - 1) * ROW_GAP
    height += (COLOUR_BAR_BLOCK if n_sentences else 0.0) + (TITLE_BLOCK if title else 0.0)
    return width, height


def figure_size(n_sentences: int, title: bool = False) -> tuple[int, int]:
    """PNG ``(width, height)`` in pixels of the picture with ``n_sentences`` sentence maps (and a title)."""
    width, height = _figure_inches(n_sentences, title)
    return round(width * DPI), round(height * DPI)


def _wrap(text: str, width: int = CAPTION_WIDTH, max_lines: int = CAPTION_LINES) -> str:
    lines = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 3].rstrip() + "..."
    return "\n".join(lines)


def _draw_boxes(ax, boxes: Sequence[tuple[int, Box]]) -> None:
    """Box outlines with their number (``(number, box)`` pairs); the labels go into the text beside."""
    from matplotlib.patches import Rectangle

    for number, box in boxes:
        ax.add_patch(
            Rectangle((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0, fill=False, ec=BOX_COLOUR, lw=2)
        )
        ax.text(
            box.x0,
            box.y0,
            str(number),
            color="black",
            fontsize=FONT_SIZE,
            fontweight="bold",
            ha="left",
            va="top",
            clip_on=True,
            bbox={"boxstyle": "square,pad=0.15", "fc": BOX_COLOUR, "ec": "none"},
        )


def _draw_marker(ax, marker: OrientationMarker | None) -> None:
    import matplotlib.patheffects as effects

    if marker is None or not marker.text:
        return
    left = marker.side == "left"
    ax.text(
        0.03 if left else 0.97,
        0.97,
        marker.text,
        transform=ax.transAxes,
        ha="left" if left else "right",
        va="top",
        color="white",
        fontsize=FONT_SIZE * 1.3,
        fontweight="bold",
        path_effects=[effects.withStroke(linewidth=2.5, foreground="black")],
        gid="orientation-marker",
    )


def _box_lines(boxes: Sequence[tuple[int, Box]]) -> list[str]:
    return [f"box {number}: {box.label or 'ground truth'}" for number, box in boxes]


def draw_explanation(
    image: np.ndarray,
    score_maps: np.ndarray,
    sentences: Sequence[str],
    path: str | Path,
    boxes: Sequence[Box] = (),
    title: str | None = None,
    orientation: OrientationMarker | None = None,
) -> Path:
    """Save :func:`explanation_figure` as a PNG of size :func:`figure_size` ``(len(sentences), bool(title))``.

    Args: as :func:`explanation_figure`, and ``path``, the output PNG.
    """
    fig = explanation_figure(image, score_maps, sentences, boxes, title, orientation)
    try:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size stays figure_size(K)
    finally:
        plt.close(fig)
    return path


def explanation_figure(
    image: np.ndarray,
    score_maps: np.ndarray,
    sentences: Sequence[str],
    boxes: Sequence[Box] = (),
    title: str | None = None,
    orientation: OrientationMarker | None = None,
):
    """The explanation picture as a matplotlib ``Figure`` of :func:`figure_size` pixels at :data:`DPI`.

    Layout: a grid of two columns of cells without empty cells (:func:`_layout`). The first cell is the
    radiograph with every box; each further cell is one sentence's map over the image with the numbered
    sentence, wrapped, beside it (and the labels of that sentence's boxes). One colour bar at the bottom
    serves all maps. Text size is :data:`FONT_SIZE`, fixed relative to the panels. Boxes are numbered on the
    image; their labels are written in the text beside.

    The maps are drawn as given: ``score_maps[k]`` stretched over the image with bilinear interpolation, colour
    map ``jet`` at alpha 0.45, one colour scale (min..max of all maps) for all sentences, since critic scores
    of one image are comparable across its sentences.

    Args:
        image: H x W radiograph in [0, 1] (bright = dense), row 0 at the top.
        score_maps: K x h x w critic scores (K = len(sentences)), region (0, 0) at the image's top-left.
        sentences: the K sentences (captions).
        boxes: ground-truth boxes in image pixels; a box with ``sentence_index`` k is drawn on panel k too.
        title: figure title.
        orientation: the R/L marker drawn on every panel (:func:`orientation_marker`); None: no marker.
    """
    image = np.asarray(image, dtype=np.float32)
    maps = np.asarray(score_maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != len(sentences):
        raise ValueError(f"score_maps must be K x h x w with K = {len(sentences)}, got {maps.shape}")
    height, width = image.shape
    n = len(sentences)
    columns, rows, radiograph_rows = _layout(n)
    fig_w, fig_h = _figure_inches(n, bool(title))
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=DPI)

    def rect(left: float, top: float, w: float, h: float) -> list[float]:
        """Axes rectangle in figure fractions from inches measured from the figure's top-left corner."""
        return [left / fig_w, 1 - (top + h) / fig_h, w / fig_w, h / fig_h]

    grid_top = MARGIN + (TITLE_BLOCK if title else 0.0)

    def cell_origin(row: int, column: int) -> tuple[float, float]:
        return MARGIN + column * (CELL_WIDTH + COLUMN_GAP), grid_top + row * (MAP_SIDE + ROW_GAP)

    def image_axes(left: float, top: float, side: float):
        ax = fig.add_axes(rect(left, top, side, side))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, extent=extent, origin="upper")
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        return ax

    numbered = list(enumerate(boxes, start=1))
    text_style = {"fontsize": FONT_SIZE, "va": "top", "ha": "left", "linespacing": 1.15}
    extent = (0, width, height, 0)  # origin="upper": image row 0 at the top, maps stretched over the image
    # one colour scale for all sentences: critic scores of one image are comparable across sentences
    vmin, vmax = (float(maps.min()), float(maps.max())) if maps.size else (0.0, 1.0)

    # the radiograph: the first cell, or the first two rows of the first column (caption under the image)
    left, top = cell_origin(0, 0)
    caption = [f"Radiograph (model input, {width} x {height} px)"]
    if orientation is not None and orientation.note:
        caption.append(orientation.note)
    if numbered:
        caption.append(
            "boxes: " + ", ".join(f"{number} {box.label or '(no label)'}" for number, box in numbered)
        )
    if radiograph_rows == 2:
        side = 2 * MAP_SIDE + ROW_GAP - RADIOGRAPH_CAPTION  # the caption goes under the image
        ax = image_axes(left + (CELL_WIDTH - side) / 2, top, side)
        lines = int(RADIOGRAPH_CAPTION * 72 / (1.2 * FONT_SIZE))
        text = _wrap("\n".join(caption), int(CELL_WIDTH * 72 / (_GLYPH_WIDTH * FONT_SIZE)), lines)
        ax.text(-(CELL_WIDTH - side) / 2 / side, -0.03, text, transform=ax.transAxes, **text_style)
    else:
        ax = image_axes(left, top, MAP_SIDE)
        ax.text(1 + TEXT_GAP / MAP_SIDE, 1, _wrap("\n".join(caption)), transform=ax.transAxes, **text_style)
    _draw_boxes(ax, numbered)
    _draw_marker(ax, orientation)

    heat = None
    slots = [
        (row, column)
        for row in range(rows)
        for column in range(columns)
        if not (column == 0 and row < radiograph_rows)
    ]
    for k, (row, column) in enumerate(slots[:n]):
        left, top = cell_origin(row, column)
        ax = image_axes(left, top, MAP_SIDE)
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
        mine = [(number, box) for number, box in numbered if box.sentence_index == k]
        _draw_boxes(ax, mine)
        _draw_marker(ax, orientation)
        words = f"{k + 1}. {sentences[k]}"
        text = _wrap("\n".join([words, *_box_lines(mine)]))
        ax.text(1 + TEXT_GAP / MAP_SIDE, 1, text, transform=ax.transAxes, **text_style)

    if heat is not None:
        bar_top = grid_top + rows * MAP_SIDE + (rows - 1) * ROW_GAP + 0.2
        cax = fig.add_axes(rect((fig_w - CELL_WIDTH) / 2, bar_top, CELL_WIDTH, COLOUR_BAR_HEIGHT))
        bar = fig.colorbar(heat, cax=cax, orientation="horizontal")
        bar.ax.tick_params(labelsize=FONT_SIZE * 0.85)
        bar.set_label("critic score (one scale for all sentences of this image)", fontsize=FONT_SIZE * 0.9)
    if title:
        fig.text(0.5, 1 - MARGIN / fig_h, title, ha="center", va="top", fontsize=FONT_SIZE * 1.2)
    return fig


#: Caption of the single panel drawn for a global-MI run.
REPORT_MAP_CAPTION = "whole report (global MI: each region against the report vector)"
#: The objective's constructor arguments, written beside ``critic.pt`` by newer pretraining runs.
OBJECTIVE_FILE = "objective.json"


def _objective_from_spec(spec: dict, path: Path, trusted: bool = True) -> nn.Module:
    """Build the objective from ``objective.json``: a MONAI config item (``_target_``) or the constructor
    keyword arguments of :class:`radmi.losses.objectives.PretrainObjective` (bare, or under ``"kwargs"``).

    ``trusted=False``: only a spec of literals and ``radmi.losses`` targets is built (what radmi writes);
    anything else would run the spec's code and is refused (:mod:`radmi.trust`)."""
    from monai.bundle import ConfigParser

    from radmi.losses.objectives import PretrainObjective
    from radmi.trust import plain_objective_reason, require_trusted

    if not isinstance(spec, dict):
        raise ModelLoadError(f"{OBJECTIVE_FILE} must hold a JSON object", path=path)
    if not trusted and plain_objective_reason(spec):
        require_trusted(path.parent.parent, what="run")
    try:
        if "_target_" in spec:
            return ConfigParser({"objective": spec}).get_parsed_content("objective", instantiate=True)
        kwargs = spec["kwargs"] if isinstance(spec.get("kwargs"), dict) else spec
        return PretrainObjective(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot rebuild the objective: {err}", path=path) from err


def load_run_objective(run_dir: str | Path, parser=None, *, trust: bool = False) -> nn.Module:
    """The pretraining objective of a run, with its trained critic(s) from ``models/critic.pt``.

    ``models/objective.json`` is preferred when present; otherwise ``loss_def`` of the run's ``config.json`` is
    parsed again (runs written before that file existed).

    A run that is not trusted (:mod:`radmi.trust`: not written by radmi on this machine, not in the trust file,
    and ``trust`` is False) is refused with a :class:`ModelLoadError` whenever rebuilding the objective would
    evaluate config code: a ``loss_def`` fallback, or an ``objective.json`` with expressions or targets outside
    ``radmi.losses``.

    Args:
        run_dir: a ``radmi pretrain`` run directory.
        parser: the run's ``config.json`` as a MONAI ``ConfigParser`` (parsed here when None).
        trust: evaluate the run's configs even if it is not trusted (``--trust``).
    """
    from radmi.trust import is_trusted, require_trusted

    run_dir = Path(run_dir)
    trusted = trust or is_trusted(run_dir)
    models = run_dir / "models"
    spec_path = models / OBJECTIVE_FILE
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text())
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"not valid JSON: {err}", path=spec_path) from err
        objective = _objective_from_spec(spec, spec_path, trusted=trusted)
    else:
        require_trusted(run_dir, trust=trusted, what="run")  # loss_def is an expression of the recipe
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


#: The items of a pretraining run's ``config.json`` that :class:`PretrainedRun` reads.
RUN_SETTINGS = ("image_size", "max_length", "max_sentences", "text_model", "crop_size")


def run_config_settings(run_dir: str | Path, *, trust: bool = False, keys=RUN_SETTINGS):
    """``({key: value}, parser)`` of a pretraining run's ``config.json`` for ``keys`` (the ones it has).

    A trusted run (``trust``, or :func:`radmi.trust.is_trusted`) is parsed with MONAI's ``ConfigParser``
    (``parser`` is returned for reuse). Any other run is read as plain JSON and nothing in it is evaluated:
    each key must hold a literal value, else a :class:`ModelLoadError` says the run is not trusted; ``parser``
    is then None.
    """
    from radmi.trust import is_literal, is_trusted, require_trusted

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read the run's config: {err}", path=config_path) from err
    if not isinstance(config, dict):
        raise ModelLoadError("the run's config.json must hold a JSON object", path=config_path)
    if trust or is_trusted(run_dir):
        from monai.bundle import ConfigParser

        parser = ConfigParser(config)
        return {key: parser.get_parsed_content(key) for key in keys if key in parser}, parser
    if not all(is_literal(config[key]) for key in keys if key in config):
        require_trusted(run_dir, what="run")
    return {key: config[key] for key in keys if key in config}, None


class PretrainedRun(nn.Module):
    """The parts of a pretraining run needed for region x sentence maps.

    The run's ``config.json`` is MONAI config code. A run that radmi wrote on this machine, or that is listed in
    the trust file, is parsed with ``ConfigParser`` as before; any other run (e.g. copied from elsewhere) is only
    read as data: :data:`RUN_SETTINGS` must then be literal values and ``models/objective.json`` plain (see
    :func:`load_run_objective`), else a one-line :class:`ModelLoadError` says it is not trusted (``trust=True``,
    ``--trust`` or ``radmi bundle trust RUN_DIR`` overrides).

    Args:
        run_dir: a ``radmi pretrain`` run directory.
        device: where to run.
        trust: evaluate the run's configs even if it is not trusted.
    """

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu", *, trust: bool = False) -> None:
        super().__init__()
        from radmi.models.hub import load_tokenizer
        from radmi.models.image import load_image_encoder
        from radmi.models.multimodal import ImageTextModel
        from radmi.models.text import load_text_encoder
        from radmi.trust import is_trusted

        self.run_dir = Path(run_dir)
        models = self.run_dir / "models"
        config_path = self.run_dir / "config.json"
        if not config_path.is_file():
            raise ModelLoadError("not a radmi pretrain run directory (no config.json)", path=self.run_dir)
        trusted = trust or is_trusted(self.run_dir)
        self.trusted = trusted  # so code reading more of the config later (zero-shot, retrieval) may parse it too
        settings, parser = run_config_settings(self.run_dir, trust=trusted)
        self.image_size = int(settings["image_size"])
        self.max_length = int(settings["max_length"])
        self.max_sentences = int(settings["max_sentences"])
        if settings.get("crop_size") is not None:
            self.crop_size = int(settings["crop_size"])
        self.image_encoder = load_image_encoder(self.run_dir)
        self.text_encoder = load_text_encoder(models / "text_encoder")
        tokenizer_source = models / "text_encoder"
        if not (tokenizer_source / "tokenizer_config.json").is_file():
            tokenizer_source = settings["text_model"]
        self.tokenizer = load_tokenizer(tokenizer_source)
        self.objective = load_run_objective(self.run_dir, parser, trust=trusted)
        self.kind = str(self.objective.kind)
        # the pretraining network's forward gives the feature dict the objectives read (shares the encoders)
        self.network = ImageTextModel(self.image_encoder, self.text_encoder)
        self.to(torch.device(device)).eval()

    @property
    def device(self) -> torch.device:
        """Where the weights are; follows ``.to()`` (a bundle's ``network_def.to(@device)``)."""
        return next(self.image_encoder.parameters()).device

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
    *,
    view_position: str | None = None,
    patient_orientation: str | Sequence[str] | None = None,
) -> Path:
    """Load a DICOM/PNG, resize it as the run's inputs, draw the sentence maps (and boxes) to ``out_path``.

    A global-MI run has no sentence maps; its one region-to-report map (:meth:`PretrainedRun.report_map`) is
    drawn as a single panel instead, with every box on it.

    The R/L marker comes from :func:`orientation_marker` on the DICOM's ViewPosition and PatientOrientation;
    ``view_position`` / ``patient_orientation`` replace the header's values (a PNG/JPG has none: without them
    it gets no marker).
    """
    from radmi.data.reports import report_sentences
    from radmi.eval.grounding import boxes_to_input
    from radmi.transforms.dicom import LoadXRay
    from radmi.transforms.image import XRayResize

    image = XRayResize(run.image_size)(LoadXRay()(image_path))
    header_view, header_orientation = _view_and_orientation(image_path)
    marker = orientation_marker(
        view_position if view_position is not None else header_view,
        patient_orientation if patient_orientation is not None else header_orientation,
    )
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
    return draw_explanation(image[0].numpy(), maps, captions, out_path, boxes, orientation=marker)


def _view_and_orientation(image_path: str | Path) -> tuple[str | None, list[str] | None]:
    """ViewPosition and PatientOrientation from a DICOM header; ``(None, None)`` for a PNG/JPG."""
    from radmi.errors import RadmiError
    from radmi.transforms.dicom import read_dicom_header
    from radmi.transforms.image import is_image_file

    if is_image_file(image_path):
        return None, None
    try:
        header = read_dicom_header(image_path, ("ViewPosition", "PatientOrientation"))
    except RadmiError:  # the pixels were read already; a header that cannot be re-read only loses the marker
        return None, None
    orientation = header.get("PatientOrientation")
    if orientation is not None and not isinstance(orientation, str):
        orientation = [str(v) for v in orientation]
    return (str(header.get("ViewPosition", "") or "") or None), (orientation or None)
