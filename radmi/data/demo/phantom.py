"""Drawing one radiograph: anatomy + findings on the canonical canvas, then the acquisition geometry, exposure and noise.

Density is additive: the image density is the anatomy plus one delta map per finding, so rendering without a
finding (``omit``) gives exactly the image minus that finding's contribution (the noise is seeded apart from
the findings). A finding's box is the bounding box, in STORED pixel coordinates, of where its delta exceeds
5% of its peak, mapped through the acquisition geometry, so it stays right under rotation, scaling, shifts and any stored size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import zoom

from radmi.data.demo import findings as F
from radmi.data.demo.anatomy import LUNG_AIR, Patient, lung_field, lung_markings, render_anatomy
from radmi.data.demo.shapes import band_along_polyline, bezier, bump, canvas_grid, smoothstep, soft_ellipse

# The canvas spans about 430 mm (a 17-inch detector); used to size nodules from their diameter in cm.
CANVAS_MM = 430.0
BOX_THRESHOLD = 0.05  # a box covers where the delta exceeds this fraction of its peak
# The anatomy is smooth, so it is drawn on a canvas of at most this many pixels a side and the warp onto the
# stored grid upsamples it; the noise is added at the stored resolution.
CANVAS_MAX = 256


@dataclass(frozen=True)
class Acquisition:
    """Geometry and exposure of one image.

    Attributes:
        rows, cols: stored image size in pixels.
        rotation: in-plane rotation in radians (positive = counter-clockwise on screen).
        zoom: magnification of the anatomy (1 = the canvas side equals ``rows``).
        shift: (rows, cols) offset of the anatomy, as fractions of the canvas side.
        gain: exposure; intensity = 1 - exp(-gain * density).
        noise: standard deviation of the additive Gaussian noise, in [0, 1] intensity units.
        gradient: top-to-bottom intensity ramp (anode heel effect), in intensity units.
    """

    rows: int
    cols: int
    rotation: float
    zoom: float
    shift: tuple[float, float]
    gain: float
    noise: float
    gradient: float

    @staticmethod
    def sample(rng: np.random.Generator, size: int, view: str) -> Acquisition:
        aspect = rng.uniform(0.82, 1.0)
        return Acquisition(
            rows=size,
            cols=int(round(size * aspect)),
            rotation=float(
                np.deg2rad(rng.uniform(-6.0, 6.0) if view == "frontal" else rng.uniform(-3.0, 3.0))
            ),
            zoom=float(rng.uniform(0.9, 1.06)),
            shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
            gain=float(rng.uniform(1.0, 1.3)),
            noise=float(rng.uniform(0.005, 0.012)),
            gradient=float(rng.uniform(-0.03, 0.03)),
        )

    def _matrix(self, canvas_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(matrix, offset)`` mapping stored (row, col) indices to canvas (row, col) indices."""
        c, s = np.cos(self.rotation), np.sin(self.rotation)
        # at zoom 1 the canvas side maps onto the stored rows
        matrix = np.array([[c, -s], [s, c]]) * (canvas_size / self.rows) / self.zoom
        stored_center = np.array([(self.rows - 1) / 2.0, (self.cols - 1) / 2.0])
        canvas_center = np.full(2, (canvas_size - 1) / 2.0) + np.array(self.shift) * canvas_size
        return matrix, canvas_center - matrix @ stored_center

    def warp(self, canvas: np.ndarray) -> np.ndarray:
        """Resample a ``C x C`` float32 canvas map onto the stored ``rows x cols`` grid (bilinear, 0 outside).

        Pillow's affine transform does the resampling (several times faster than ``scipy.ndimage``); it maps
        pixel-edge coordinates (x, y), so the index-space matrix is shifted by half a pixel and axis-swapped.
        """
        matrix, offset = self._matrix(canvas.shape[0])
        edge_offset = offset + 0.5 - matrix @ np.array([0.5, 0.5])
        data = (matrix[1, 1], matrix[1, 0], edge_offset[1], matrix[0, 1], matrix[0, 0], edge_offset[0])
        image = Image.fromarray(np.ascontiguousarray(canvas, dtype=np.float32))
        warped = image.transform(
            (self.cols, self.rows), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
        )
        return np.asarray(warped, dtype=np.float32)

    def box(self, support: np.ndarray) -> tuple[int, int, int, int] | None:
        """Stored-pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of a boolean ``C x C`` canvas support.

        The support pixels are mapped forward through the inverse warp and padded by the bilinear footprint
        of one canvas pixel, so the box holds every stored pixel the warped support touches.
        """
        points = np.argwhere(support).astype(np.float64)
        if not len(points):
            return None
        matrix, offset = self._matrix(support.shape[0])
        stored = (points - offset) @ np.linalg.inv(matrix).T  # rows of (row, col)
        pad = 1.0 / np.sqrt(abs(np.linalg.det(matrix))) + 0.5
        y0, x0 = np.floor(stored.min(axis=0) - pad)
        y1, x1 = np.ceil(stored.max(axis=0) + pad) + 1
        x0, y0 = max(int(x0), 0), max(int(y0), 0)
        x1, y1 = min(int(x1), self.cols), min(int(y1), self.rows)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


@dataclass
class Rendered:
    """One rendered radiograph.

    Attributes:
        image: ``rows x cols`` float32 in [0, 1], bright = dense.
        boxes: per finding (same order as the finding list) ``(x0, y0, x1, y1)`` in stored pixels, x = column,
            y = row, x1/y1 exclusive; ``None`` for an omitted finding or one that fell outside the image.
    """

    image: np.ndarray
    boxes: list[tuple[int, int, int, int] | None]


def _patchiness(rng: np.random.Generator, size: int, low: float) -> np.ndarray:
    """Smooth random texture in [low, 1] (canvas shape), for patchy opacities."""
    coarse = rng.uniform(low, 1.0, size=(8, 8)).astype(np.float32)
    return zoom(coarse, size / 8.0, order=1)[:size, :size]


def _lungs_for(side: str, view: str) -> list[str]:
    if view == "lateral":
        return ["right"]  # one superimposed lung field
    return ["right", "left"] if side == "bilateral" else [side]


def _lateral_sign(side: str, view: str) -> float:
    """+1 where the lateral (chest-wall) direction of the lung is toward larger u, else -1."""
    if view == "lateral":
        return 1.0  # posterior, toward the spine
    return -1.0 if side == "right" else 1.0


def _zone_v(patient: Patient, view: str, zone: str) -> float:
    cv = patient.lung_center("right", view)[1]
    return cv + {"upper": -0.55, "mid": 0.0, "lower": 0.4}[zone] * patient.lung_half_height


def _focal_center(patient, view, side, zone, rng) -> tuple[float, float]:
    cu, _ = patient.lung_center(side, view)
    a, _ = patient.lung_axes(view)
    jitter = rng.uniform(-0.35, 0.35) * a
    return cu + jitter, _zone_v(patient, view, zone) + rng.uniform(-0.03, 0.03)


def finding_delta(
    finding: F.Finding, u: np.ndarray, v: np.ndarray, patient: Patient, view: str, markings: np.ndarray, rng
) -> np.ndarray:
    """The density added (or removed) by one non-anatomical finding on the canvas (canvas shape, float32).

    Cardiomegaly and Enlarged Cardiomediastinum change the anatomy itself and are handled in ``render``.
    """
    label, size = finding.label, u.shape[0]
    delta = np.zeros_like(u)
    if label == F.EFFUSION:
        height = {1: 0.07, 2: 0.13, 3: 0.21}[finding.severity]
        for side in _lungs_for(finding.side, view):
            cu, _ = patient.lung_center(side, view)
            a, _ = patient.lung_axes(view)
            lateral = np.clip(_lateral_sign(side, view) * (u - cu) / a, -1.0, 1.2)
            # the meniscus rises toward the chest wall and blunts the costophrenic angle
            level = (
                patient.dome(np.float32(cu), side, view)
                - height
                - 0.6 * height * np.clip(lateral + 0.3, 0, None)
            )
            # fading medially keeps the fluid off the heart shadow, which has no air left to replace
            medial_fade = smoothstep((lateral + 0.45) / 0.35)
            fluid = smoothstep((v - level) / 0.02) * medial_fade * lung_field(u, v, patient, side, view)
            delta += 0.95 * LUNG_AIR * fluid
    elif label == F.PNEUMOTHORAX:
        depth = {1: 0.14, 2: 0.22, 3: 0.32}[finding.severity]
        side = _lungs_for(finding.side, view)[0]
        cu, cv = patient.lung_center(side, view)
        a, b = patient.lung_axes(view)
        lung = lung_field(u, v, patient, side, view)
        r = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
        upper = smoothstep((cv - 0.1 * b - v) / 0.05)
        lucent = smoothstep((r - (1.0 - depth)) / 0.02) * lung * upper
        pleural_line = smoothstep(1.0 - np.abs(r - (1.0 - depth)) / 0.025) * upper * (r < 1.0)
        # more air and no lung markings beyond the pleural line, which itself is a thin white line
        delta += -(0.18 + 0.08 * markings) * lucent + 0.15 * pleural_line
    elif label in (F.CONSOLIDATION, F.LUNG_OPACITY):
        center = _focal_center(patient, view, finding.side, finding.zone, rng)
        s = finding.severity
        if label == F.CONSOLIDATION:
            axes, amplitude, low = (0.045 + 0.015 * s, 0.04 + 0.012 * s), 0.5, 0.7
        else:
            axes, amplitude, low = (0.06 + 0.02 * s, 0.055 + 0.015 * s), 0.28, 0.4
        lung = lung_field(u, v, patient, _lungs_for(finding.side, view)[0], view)
        angle = rng.uniform(-0.5, 0.5)
        delta += amplitude * bump(u, v, center, axes, angle) ** 0.5 * _patchiness(rng, size, low) * lung
    elif label == F.LUNG_LESION:
        center = _focal_center(patient, view, finding.side, finding.zone, rng)
        radius = F.nodule_diameter_cm(finding.severity) * 10.0 / CANVAS_MM / 2.0
        delta += 0.45 * soft_ellipse(u, v, center, (radius, radius), edge=0.3)
    elif label == F.ATELECTASIS:
        thickness = 0.009 + 0.005 * finding.severity
        for side in _lungs_for(finding.side, view):
            cu, _ = patient.lung_center(side, view)
            level = float(patient.dome(np.float32(cu), side, view)) - 0.05 - rng.uniform(0.0, 0.03)
            lung = lung_field(u, v, patient, side, view)
            center = (cu + rng.uniform(-0.02, 0.02), level)
            delta += 0.45 * bump(u, v, center, (0.08, thickness), rng.uniform(-0.2, 0.2)) ** 0.5 * lung
    elif label == F.EDEMA:
        grade = finding.severity
        hila = [0.52] if view == "lateral" else [0.5 - 0.1, 0.5 + 0.1]
        cv = patient.lung_center("right", view)[1]
        haze = np.zeros_like(u)
        for hu in hila:
            haze = np.maximum(haze, bump(u, v, (hu, cv), (0.09 + 0.035 * grade, 0.13 + 0.04 * grade)))
        lungs = sum(lung_field(u, v, patient, s, view) for s in _lungs_for("bilateral", view))
        delta += (0.05 + 0.07 * grade) * haze * (0.6 + 0.6 * markings) * lungs
    elif label == F.SUPPORT_DEVICES:
        delta += _device(finding, u, v, patient, view, rng)
    return delta.astype(np.float32)


def _device(finding: F.Finding, u, v, patient: Patient, view: str, rng) -> np.ndarray:
    top = patient.lung_top
    lateral = view == "lateral"
    if finding.device == "endotracheal tube":
        x = (0.36 if lateral else 0.5) + rng.uniform(-0.01, 0.01)
        tip = top + 0.12 + rng.uniform(0.0, 0.04)
        points = np.array([[x, 0.0], [x + (0.04 if lateral else 0.0), tip]])
        # a radiopaque-walled tube about 1 cm wide
        walls = band_along_polyline(u, v, points, 0.012) - 0.5 * band_along_polyline(u, v, points, 0.006)
        return 0.9 * walls.astype(np.float32)
    if finding.device == "central line":
        sign = -1.0 if finding.side == "right" else 1.0
        start = (0.5 + sign * 0.17, 0.0) if not lateral else (0.45, 0.0)
        bend = (0.5 + sign * 0.09, top + 0.05) if not lateral else (0.42, top + 0.05)
        tip = (0.5 - 0.03 + rng.uniform(-0.01, 0.01), top + 0.2 + rng.uniform(0.0, 0.05))
        if lateral:
            tip = (0.4, top + 0.22)
        return 1.0 * band_along_polyline(u, v, bezier(start, bend, tip), 0.007)
    # pacemaker: generator over the left upper chest, leads into the heart
    box_center = (0.5 + 0.25, top + 0.03) if not lateral else (0.22, top + 0.08)
    generator = soft_ellipse(u, v, box_center, (0.035, 0.025), edge=0.15)
    heart_v = patient.lung_center("right", view)[1] + 0.15
    lead_end = (0.52, heart_v) if not lateral else (0.34, heart_v)
    lead = band_along_polyline(u, v, bezier(box_center, (0.55, top + 0.05), lead_end), 0.006)
    return (1.3 * generator + 0.8 * lead).astype(np.float32)


def render(
    patient: Patient,
    finding_list: Sequence[F.Finding],
    acquisition: Acquisition,
    view: str,
    seed: int,
    omit: Sequence[int] = (),
) -> Rendered:
    """Render one radiograph.

    Args:
        patient: the subject's anatomy.
        finding_list: the study's findings (all of them; ``omit`` removes some by index).
        acquisition: geometry and exposure of this image.
        view: ``"frontal"`` or ``"lateral"``.
        seed: the image seed; finding ``k`` draws its own randomness from ``(seed, k)`` and the noise from
            ``(seed, "noise")``, so omitting one finding leaves everything else unchanged.
        omit: indices into ``finding_list`` not to draw (to measure a finding's effect: with minus without).

    Returns:
        ``Rendered`` with the ``rows x cols`` image in [0, 1] (bright = dense) and the per-finding boxes.
    """
    size = min(acquisition.rows, CANVAS_MAX)
    u, v = canvas_grid(size)
    markings = lung_markings(size, patient, view)
    kept = [k for k in range(len(finding_list)) if k not in set(omit)]

    def grade(label: str, skip: int | None = None) -> int:
        return max(
            (finding_list[k].severity for k in kept if k != skip and finding_list[k].label == label),
            default=0,
        )

    anatomy = render_anatomy(u, v, patient, view, markings, grade(F.CARDIOMEGALY), grade(F.ENLARGED_CM))
    density = anatomy.copy()
    deltas: dict[int, np.ndarray] = {}
    for k in kept:
        finding = finding_list[k]
        if finding.label in (F.CARDIOMEGALY, F.ENLARGED_CM):
            # the finding's effect is the anatomy with it minus the anatomy without it
            without = render_anatomy(
                u, v, patient, view, markings, grade(F.CARDIOMEGALY, k), grade(F.ENLARGED_CM, k)
            )
            deltas[k] = anatomy - without
        else:
            rng = np.random.default_rng([seed, 2, k])
            deltas[k] = finding_delta(finding, u, v, patient, view, markings, rng)
            density += deltas[k]
    stored_density = acquisition.warp(density)
    rows, cols = stored_density.shape
    noise_rng = np.random.default_rng([seed, 1])
    ramp = acquisition.gradient * (np.arange(rows, dtype=np.float32)[:, None] / rows - 0.5)
    image = 1.0 - np.exp(-acquisition.gain * np.clip(stored_density, 0.0, None))
    image = image + ramp + acquisition.noise * noise_rng.standard_normal((rows, cols), dtype=np.float32)
    boxes: list[tuple[int, int, int, int] | None] = [None] * len(finding_list)
    for k, delta in deltas.items():
        magnitude = np.abs(delta)
        boxes[k] = (
            acquisition.box(magnitude > BOX_THRESHOLD * magnitude.max()) if magnitude.max() > 0 else None
        )
    return Rendered(np.clip(image, 0.0, 1.0).astype(np.float32), boxes)
