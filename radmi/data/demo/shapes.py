"""Smooth shape primitives on a canonical canvas, in normalized coordinates (u right, v down, both in [0, 1]).

Every shape has compact support (exactly zero outside it), so a finding drawn with them changes the image only
inside a known region, and its bounding box is exact.
"""

from __future__ import annotations

import numpy as np


def canvas_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a ``size x size`` canvas: ``(u, v)``, each ``size x size`` float32 in (0, 1)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    v, u = np.meshgrid(axis, axis, indexing="ij")
    return u, v


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 for x <= 0, 1 for x >= 1, a C1 ramp between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def ellipse_radius(
    u: np.ndarray, v: np.ndarray, center: tuple[float, float], axes: tuple[float, float], angle: float = 0.0
) -> np.ndarray:
    """Normalized elliptic radius: 1 on the ellipse boundary, 0 at its centre. ``angle`` in radians."""
    du, dv = u - center[0], v - center[1]
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        du, dv = c * du + s * dv, -s * du + c * dv
    return np.sqrt((du / axes[0]) ** 2 + (dv / axes[1]) ** 2)


def soft_ellipse(
    u: np.ndarray,
    v: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    edge: float = 0.08,
    angle: float = 0.0,
) -> np.ndarray:
    """An ellipse mask in [0, 1]: 1 inside ``r < 1 - edge``, ramping to exactly 0 at ``r = 1``."""
    r = ellipse_radius(u, v, center, axes, angle)
    return smoothstep((1.0 - r) / max(edge, 1e-6))


def bump(
    u: np.ndarray, v: np.ndarray, center: tuple[float, float], axes: tuple[float, float], angle: float = 0.0
):
    """A dome ``(1 - r^2)^2`` inside the ellipse, exactly 0 outside: a focal density with soft borders."""
    r2 = ellipse_radius(u, v, center, axes, angle) ** 2
    return np.clip(1.0 - r2, 0.0, None) ** 2


def band_along_polyline(u: np.ndarray, v: np.ndarray, points: np.ndarray, half_width: float) -> np.ndarray:
    """A band of ``half_width`` around a polyline (K x 2 points in (u, v)), 1 on the line, 0 beyond.

    The distance to the polyline is the minimum over its segments; the grid is only evaluated inside the
    polyline's bounding box (plus the width) to keep long thin devices cheap.
    """
    size = u.shape[0]
    lo = np.clip(((points.min(axis=0) - half_width) * size).astype(int) - 1, 0, size)
    hi = np.clip(((points.max(axis=0) + half_width) * size).astype(int) + 2, 0, size)
    out = np.zeros_like(u)
    uu, vv = u[lo[1] : hi[1], lo[0] : hi[0]], v[lo[1] : hi[1], lo[0] : hi[0]]
    dist = np.full(uu.shape, np.inf, dtype=np.float32)
    for (u0, v0), (u1, v1) in zip(points[:-1], points[1:], strict=True):
        du, dv = u1 - u0, v1 - v0
        t = np.clip(((uu - u0) * du + (vv - v0) * dv) / max(du * du + dv * dv, 1e-12), 0.0, 1.0)
        np.minimum(dist, np.hypot(uu - (u0 + t * du), vv - (v0 + t * dv)), out=dist)
    out[lo[1] : hi[1], lo[0] : hi[0]] = smoothstep(1.0 - dist / half_width)
    return out


def bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    """Points of a quadratic Bezier curve through control points p0, p1, p2: ``n x 2``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
