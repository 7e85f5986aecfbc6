"""Phantom chest anatomy on a square canonical canvas: a density map (bright = dense), not an accurate anatomy.

Density is a dimensionless line-integral stand-in: about 0 for air outside the body, 0.3 for aerated lung,
0.9 for soft tissue, more for bone and metal. The frontal view is PA/AP: the patient's right is on the image's
left. The lateral view faces left (anterior on the image's left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from radmi.data.demo.shapes import ellipse_radius, smoothstep, soft_ellipse

SOFT_TISSUE = 0.9
LUNG_AIR = 0.6  # density removed where the lung is aerated


@dataclass(frozen=True)
class Patient:
    """Per-subject anatomy, in canonical canvas units (fractions of the canvas side).

    Attributes:
        body_half_width: half width of the body outline.
        lung_offset: horizontal distance from the midline to each lung's centre.
        lung_half_width, lung_half_height: lung field semi-axes.
        lung_top: v of the lung apices.
        dome_drop: how far the left dome sits below the right one.
        heart_ratio: normal cardiothoracic ratio (heart width / thorax width).
        mediastinum_half_width: normal upper-mediastinum half width.
        rib_spacing: vertical distance between posterior ribs.
        marking_seed: seed of this patient's lung-marking (vessel) pattern.
    """

    body_half_width: float
    lung_offset: float
    lung_half_width: float
    lung_half_height: float
    lung_top: float
    dome_drop: float
    heart_ratio: float
    mediastinum_half_width: float
    rib_spacing: float
    marking_seed: int

    @staticmethod
    def sample(rng: np.random.Generator) -> Patient:
        return Patient(
            body_half_width=float(rng.uniform(0.42, 0.47)),
            lung_offset=float(rng.uniform(0.19, 0.21)),
            lung_half_width=float(rng.uniform(0.13, 0.145)),
            lung_half_height=float(rng.uniform(0.3, 0.33)),
            lung_top=float(rng.uniform(0.1, 0.13)),
            dome_drop=float(rng.uniform(0.0, 0.03)),
            heart_ratio=float(rng.uniform(0.38, 0.45)),
            mediastinum_half_width=float(rng.uniform(0.045, 0.055)),
            rib_spacing=float(rng.uniform(0.055, 0.062)),
            marking_seed=int(rng.integers(2**31)),
        )

    @property
    def thorax_half_width(self) -> float:
        return self.lung_offset + self.lung_half_width

    def lung_center(self, side: str, view: str) -> tuple[float, float]:
        """Centre (u, v) of the ``"right"``/``"left"`` lung field (frontal) or of the lung (lateral)."""
        v = self.lung_top + self.lung_half_height
        if view == "lateral":
            return 0.52, v
        return (0.5 - self.lung_offset if side == "right" else 0.5 + self.lung_offset), v

    def lung_axes(self, view: str) -> tuple[float, float]:
        if view == "lateral":
            return 0.22, self.lung_half_height
        return self.lung_half_width, self.lung_half_height

    def dome(self, u: np.ndarray, side: str, view: str) -> np.ndarray:
        """v of the diaphragm dome under the given lung, as a function of u (the dome is highest centrally)."""
        cu, cv = self.lung_center(side, view)
        top = cv + 0.55 * self.lung_half_height + (self.dome_drop if side == "left" else 0.0)
        return top + 1.6 * (u - cu) ** 2

    def heart_half_width(self, cardiomegaly: int) -> float:
        """Heart half width for a cardiomegaly grade 0 (normal) to 3: ratio 0.55/0.6/0.65 when enlarged."""
        ratio = self.heart_ratio if cardiomegaly == 0 else 0.5 + 0.05 * cardiomegaly
        return ratio * self.thorax_half_width

    def mediastinum_width(self, enlarged: int) -> float:
        """Upper-mediastinum half width for an enlargement grade 0 (normal) to 3."""
        return self.mediastinum_half_width * (1.0 + 0.45 * enlarged)


def lung_field(u: np.ndarray, v: np.ndarray, patient: Patient, side: str, view: str) -> np.ndarray:
    """Soft mask (canvas shape) of one lung field above its diaphragm dome; ``side`` is ignored for lateral."""
    center, axes = patient.lung_center(side, view), patient.lung_axes(view)
    inside = soft_ellipse(u, v, center, axes, edge=0.06)
    return inside * smoothstep((patient.dome(u, side, view) - v) / 0.01)


def lung_fields(u: np.ndarray, v: np.ndarray, patient: Patient, view: str) -> np.ndarray:
    """Union of the lung fields of the view (canvas shape, in [0, 1])."""
    if view == "lateral":
        return lung_field(u, v, patient, "right", view)
    return lung_field(u, v, patient, "right", view) + lung_field(u, v, patient, "left", view)


def lung_markings(size: int, patient: Patient, view: str) -> np.ndarray:
    """Vessel-like branching lines radiating from the hila (canvas shape, 0..1), fixed per patient."""
    rng = np.random.default_rng(patient.marking_seed)
    image = Image.new("F", (size, size), 0.0)
    draw = ImageDraw.Draw(image)
    hila = [(0.52, 0.47)] if view == "lateral" else [(0.5 - 0.08, 0.47), (0.5 + 0.08, 0.47)]
    for hu, hv in hila:
        for _ in range(28):
            angle = rng.uniform(0.0, 2.0 * np.pi)
            length = rng.uniform(0.12, 0.3)
            points = [(hu, hv)]
            for step in range(4):
                angle += rng.normal(0.0, 0.25)
                last = points[-1]
                points.append((last[0] + np.cos(angle) * length / 4, last[1] + np.sin(angle) * length / 4))
                width = max(1, int(size * 0.006 * (1.0 - step / 4)))
                draw.line([(float(x) * size, float(y) * size) for x, y in points[-2:]], fill=1.0, width=width)
    return gaussian_filter(np.asarray(image, dtype=np.float32), sigma=max(size / 512.0, 0.5))


def render_anatomy(
    u: np.ndarray,
    v: np.ndarray,
    patient: Patient,
    view: str,
    markings: np.ndarray,
    cardiomegaly: int = 0,
    mediastinum: int = 0,
) -> np.ndarray:
    """The anatomy density map (canvas shape, float32) with the given heart and mediastinum enlargement grades.

    Args:
        u, v: canvas coordinates from ``canvas_grid``.
        patient: the subject's anatomy.
        view: ``"frontal"`` or ``"lateral"``.
        markings: ``lung_markings`` of this patient and view.
        cardiomegaly: 0 normal heart, 1-3 enlarged (the Cardiomegaly finding modifies the anatomy itself).
        mediastinum: 0 normal, 1-3 widened upper mediastinum (Enlarged Cardiomediastinum).
    """
    if view == "lateral":
        return _render_lateral(u, v, patient, markings, cardiomegaly, mediastinum)
    return _render_frontal(u, v, patient, markings, cardiomegaly, mediastinum)


def heart_mask(u, v, patient: Patient, view: str, cardiomegaly: int) -> np.ndarray:
    """Soft heart mask; it widens with the cardiomegaly grade (toward the patient's left on frontal views)."""
    half_width = patient.heart_half_width(cardiomegaly)
    bottom = patient.lung_center("right", view)[1] + 0.6 * patient.lung_half_height
    if view == "lateral":
        # anterior-inferior; enlargement grows backwards (toward the spine)
        return soft_ellipse(
            u, v, (0.28 + half_width * 0.9, bottom - 0.12), (half_width * 0.9, 0.13), edge=0.06
        )
    center_u = 0.5 + 0.25 * half_width  # two thirds of the heart lie left of the midline
    return soft_ellipse(u, v, (center_u, bottom - 0.1), (half_width, 0.11), edge=0.06)


def mediastinum_mask(u, v, patient: Patient, view: str, enlarged: int) -> np.ndarray:
    """Soft mask of the upper mediastinum (between the apices and the heart)."""
    half_width = patient.mediastinum_width(enlarged)
    top, bottom = 0.05, patient.lung_center("right", view)[1] + 0.1
    center_u = 0.36 if view == "lateral" else 0.5
    vertical = smoothstep((v - top) / 0.03) * smoothstep((bottom - v) / 0.08)
    return vertical * smoothstep((half_width - np.abs(u - center_u)) / 0.015)


def _ribs(u, v, patient: Patient, center_u: float) -> np.ndarray:
    """Posterior ribs as periodic curved bands (all ribs of one side in one vectorized expression)."""
    dx = np.abs(u - center_u)
    phase = (v - patient.lung_top + 0.02 - 0.9 * dx**2 + 0.25 * dx) / patient.rib_spacing
    bands = smoothstep((np.cos(2.0 * np.pi * phase) - 0.55) / 0.3)
    return bands * (phase > 0) * (phase < 10) * smoothstep((dx - 0.03) / 0.02)


def _render_frontal(u, v, patient, markings, cardiomegaly, mediastinum) -> np.ndarray:
    body = soft_ellipse(u, v, (0.5, 0.6), (patient.body_half_width, 0.62), edge=0.05)
    lungs = lung_fields(u, v, patient, "frontal")
    heart = heart_mask(u, v, patient, "frontal", cardiomegaly)
    media = mediastinum_mask(u, v, patient, "frontal", mediastinum)
    air = lungs * (1.0 - np.maximum(heart, media))
    thorax = smoothstep((patient.thorax_half_width + 0.03 - np.abs(u - 0.5)) / 0.02)
    ribs = (
        _ribs(u, v, patient, 0.5)
        * thorax
        * smoothstep((patient.dome(u, "right", "frontal") + 0.05 - v) / 0.03)
    )
    spine = smoothstep((0.035 - np.abs(u - 0.5)) / 0.01) * (0.8 + 0.2 * np.cos(2.0 * np.pi * v / 0.045))
    clavicles = np.zeros_like(u)
    for sign in (-1.0, 1.0):
        # a gently curved bar from the sternal notch to the shoulder
        du = sign * (u - 0.5)
        centerline = patient.lung_top + 0.02 - 0.12 * (du - 0.05) + 0.5 * (du - 0.2) ** 2
        along = smoothstep((du - 0.05) / 0.02) * smoothstep((0.4 - du) / 0.03)
        clavicles += smoothstep(1.0 - np.abs(v - centerline) / 0.014) * along
    # the trachea: an air column down to the carina (where an endotracheal tube sits)
    carina = patient.lung_top + 0.17
    trachea = smoothstep((0.016 - np.abs(u - 0.5)) / 0.006) * smoothstep((carina - v) / 0.02)
    gastric = soft_ellipse(
        u,
        v,
        (0.5 + patient.lung_offset, patient.dome(np.float32(0.6), "left", "frontal") + 0.05),
        (0.05, 0.03),
        edge=0.3,
    )
    density = (
        SOFT_TISSUE * body
        - LUNG_AIR * air
        + 0.08 * markings * air
        + 0.12 * heart
        + 0.15 * media
        + 0.12 * ribs * body
        + 0.3 * spine * body
        + 0.25 * clavicles * body
        - 0.35 * gastric
        - 0.25 * trachea * body
    )
    return density.astype(np.float32)


def _render_lateral(u, v, patient, markings, cardiomegaly, mediastinum) -> np.ndarray:
    body = soft_ellipse(u, v, (0.5, 0.6), (0.4, 0.62), edge=0.05)
    lung = lung_fields(u, v, patient, "lateral")
    heart = heart_mask(u, v, patient, "lateral", cardiomegaly)
    media = mediastinum_mask(u, v, patient, "lateral", mediastinum)
    air = lung * (1.0 - np.maximum(heart, media))
    spine_u = 0.78
    spine = smoothstep((0.05 - np.abs(u - spine_u)) / 0.01) * (0.7 + 0.3 * np.cos(2.0 * np.pi * v / 0.05))
    sternum = smoothstep((0.012 - np.abs(u - 0.2 - 0.1 * (v - 0.3))) / 0.006) * (v > 0.2) * (v < 0.62)
    ribs = _ribs(u, v, patient, spine_u) * smoothstep(
        (0.75 - ellipse_radius(u, v, (0.52, 0.45), (0.3, 0.4))) / 0.1
    )
    density = (
        SOFT_TISSUE * body
        - 0.8 * LUNG_AIR * air
        + 0.08 * markings * air
        + 0.1 * heart
        + 0.1 * media
        + 0.06 * ribs * body
        + 0.35 * spine * body
        + 0.25 * sternum
    )
    return density.astype(np.float32)
