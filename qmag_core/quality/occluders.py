"""Occluders painted on a whole photo before detection, with the face part each covers
(for the enrolment-check experiments: which region does the report name?).

Geometry follows the subject's five landmarks in the photo: a frame on the eye line
(x along it, y down, unit = inter-eye distance, IED), so an occluder sits on the face
whatever its size, position and roll.  Random parts (colours, small size and place
jitter) come from the caller's seeded generator.

Sets never mixed: ``TEST_OCCLUDERS`` (sunglasses, surgical mask, cap) are what the
experiments report; ``EXTRA_TEST_OCCLUDERS`` (a hand over the mouth) is one more test
kind reported beside them (added after they were run); ``DEV_OCCLUDERS`` (blindfold,
scarf, headband) are other kinds over the same parts, the only ones used to choose and
tune the check's repairs.
"""

from __future__ import annotations

import numpy as np

from ..errors import QMagError

__all__ = [
    "OCCLUDERS",
    "TEST_OCCLUDERS",
    "EXTRA_TEST_OCCLUDERS",
    "DEV_OCCLUDERS",
    "PART_OF",
    "PART_REGIONS",
    "paint_occluder",
]

TEST_OCCLUDERS = ("sunglasses", "mask", "cap")
EXTRA_TEST_OCCLUDERS = ("hand",)
DEV_OCCLUDERS = ("blindfold", "scarf", "headband")
OCCLUDERS = TEST_OCCLUDERS + EXTRA_TEST_OCCLUDERS + DEV_OCCLUDERS
#: the face part each occluder covers, and the regions that name that part
PART_OF = {
    "sunglasses": "eyes",
    "blindfold": "eyes",
    "mask": "lower",
    "hand": "lower",
    "scarf": "lower",
    "cap": "forehead",
    "headband": "forehead",
}
PART_REGIONS = {"eyes": ("eyes",), "lower": ("nose", "mouth", "cheeks", "chin"), "forehead": ("forehead",)}


class _Frame:
    """Photo coordinates of points given in the eye-line frame (IED units)."""

    def __init__(self, lm: np.ndarray, rng: np.random.Generator, jitter: float):
        lm = np.asarray(lm, np.float64).reshape(5, 2)
        self.c = lm[:2].mean(0) + rng.normal(0, jitter, 2) * np.linalg.norm(lm[1] - lm[0])
        d = lm[1] - lm[0]
        self.ied = float(np.linalg.norm(d)) * float(rng.uniform(1 - jitter, 1 + jitter))
        self.u = d / max(np.linalg.norm(d), 1e-6)
        self.v = np.array([-self.u[1], self.u[0]])  # image y grows downwards
        self.mouth_b = float((lm[3:].mean(0) - lm[:2].mean(0)) @ self.v) / self.ied

    def pts(self, ab) -> list[tuple[float, float]]:
        ab = np.asarray(ab, np.float64).reshape(-1, 2)
        p = self.c + self.ied * (ab[:, :1] * self.u + ab[:, 1:] * self.v)
        return [tuple(map(float, q)) for q in p]

    def ellipse(self, a, b, ra, rb, n: int = 48) -> list[tuple[float, float]]:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return self.pts(np.c_[a + ra * np.cos(t), b + rb * np.sin(t)])


def _colour(rng, lo, hi) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _sunglasses(draw, f: _Frame, rng):
    lens = _colour(rng, 5, 40)
    for side in (-0.5, 0.5):
        draw.polygon(f.ellipse(side, 0.02, 0.4, 0.3), fill=lens)
        draw.polygon(f.ellipse(side - 0.1, -0.1, 0.1, 0.05), fill=_colour(rng, 70, 110))  # glare
    w = max(1, int(0.06 * f.ied))
    draw.line(f.pts([[-0.12, -0.05], [0.12, -0.05]]), fill=lens, width=w)
    draw.line(f.pts([[-0.9, -0.05], [-1.25, 0.0]]), fill=lens, width=w)
    draw.line(f.pts([[0.9, -0.05], [1.25, 0.0]]), fill=lens, width=w)


def _mask(draw, f: _Frame, rng):
    cloth = tuple(int(v) for v in rng.choice([[165, 200, 230], [232, 232, 232], [70, 110, 170]]))
    b0, b1 = 0.62, f.mouth_b + 0.85
    outline = [[-0.95, b0 + 0.12], [-0.3, b0], [0.3, b0], [0.95, b0 + 0.12], [0.8, b1 - 0.25], [0.3, b1], [-0.3, b1]]
    outline += [[-0.8, b1 - 0.25]]
    draw.polygon(f.pts(outline), fill=cloth)
    fold = tuple(max(0, c - 35) for c in cloth)
    w = max(1, int(0.025 * f.ied))
    for k in range(1, 4):
        b = b0 + k * (b1 - b0) / 4
        draw.line(f.pts([[-0.85, b], [0.85, b]]), fill=fold, width=w)
    draw.line(f.pts([[-0.95, b0 + 0.15], [-1.3, b0 - 0.1]]), fill=cloth, width=max(1, int(0.05 * f.ied)))
    draw.line(f.pts([[0.95, b0 + 0.15], [1.3, b0 - 0.1]]), fill=cloth, width=max(1, int(0.05 * f.ied)))


def _cap(draw, f: _Frame, rng):
    crown = _colour(rng, 20, 230)
    brim = tuple(max(0, c - 45) for c in crown)
    t = np.linspace(np.pi, 2 * np.pi, 24)
    top = np.c_[1.15 * np.cos(t), -0.55 + 1.2 * np.sin(t)]
    draw.polygon(f.pts(np.r_[top, [[1.15, -0.45], [-1.15, -0.45]]]), fill=crown)
    draw.polygon(f.ellipse(0.0, -0.42, 1.25, 0.16), fill=brim)


#: skin tones of the painted hand (light to dark), jittered per photo
_SKIN = ((236, 200, 176), (224, 172, 130), (198, 134, 90), (141, 94, 60), (92, 62, 44))


def _hand(draw, f: _Frame, rng):
    """A flat hand over mouth and chin, fingers slanting up across one cheek."""
    skin = tuple(int(np.clip(c + rng.normal(0, 8), 0, 255)) for c in _SKIN[int(rng.integers(len(_SKIN)))])
    crease = tuple(max(0, c - 40) for c in skin)
    side = float(rng.choice([-1.0, 1.0]))  # which cheek the fingers cross
    palm_y = f.mouth_b + 0.3
    draw.polygon(f.ellipse(0.05 * side, palm_y, 0.62, 0.5), fill=skin)
    w = max(2, int(0.2 * f.ied))
    for k in range(4):  # fingers from the palm's edge toward the ear
        y0 = palm_y - 0.32 + 0.2 * k
        a, b = [0.35 * side, y0], [1.05 * side, y0 - 0.32 + 0.04 * k]
        draw.line(f.pts([a, b]), fill=skin, width=w)
        draw.line(f.pts([[0.4 * side, y0 + 0.1], [1.0 * side, y0 - 0.2 + 0.04 * k]]), fill=crease, width=1)


def _blindfold(draw, f: _Frame, rng):
    cloth = _colour(rng, 0, 256)
    draw.polygon(f.pts([[-1.4, -0.32], [1.4, -0.32], [1.4, 0.3], [-1.4, 0.3]]), fill=cloth)


def _scarf(draw, f: _Frame, rng):
    a, b = _colour(rng, 0, 256), _colour(rng, 0, 256)
    b0, b1 = 0.75, f.mouth_b + 1.1
    draw.polygon(f.pts([[-1.2, b0], [1.2, b0], [1.2, b1], [-1.2, b1]]), fill=a)
    for k in range(4):  # stripes
        y = b0 + (k + 0.3) * (b1 - b0) / 4
        draw.polygon(f.pts([[-1.2, y], [1.2, y], [1.2, y + 0.08], [-1.2, y + 0.08]]), fill=b)


def _headband(draw, f: _Frame, rng):
    a, b = _colour(rng, 0, 256), _colour(rng, 0, 256)
    draw.polygon(f.pts([[-1.3, -1.25], [1.3, -1.25], [1.3, -0.5], [-1.3, -0.5]]), fill=a)
    draw.polygon(f.pts([[-1.3, -0.92], [1.3, -0.92], [1.3, -0.82], [-1.3, -0.82]]), fill=b)


_PAINT = {
    "sunglasses": _sunglasses,
    "mask": _mask,
    "cap": _cap,
    "hand": _hand,
    "blindfold": _blindfold,
    "scarf": _scarf,
    "headband": _headband,
}


def paint_occluder(
    photo: np.ndarray, kind: str, landmarks, rng: np.random.Generator, *, jitter: float = 0.04
) -> np.ndarray:
    """The photo (H, W, 3) uint8 with occluder ``kind`` painted on the subject whose five
    landmarks (5, 2, photo pixels) are given; ``jitter``: relative size and place noise."""
    from PIL import Image, ImageDraw

    if kind not in _PAINT:
        raise QMagError(f"unknown occluder {kind!r}; choose one of {', '.join(OCCLUDERS)}")
    x = np.asarray(photo, np.uint8)
    if x.ndim != 3 or x.shape[2] != 3:
        raise QMagError(f"a photo must be (H, W, 3) uint8, got {x.shape}")
    im = Image.fromarray(x.copy())
    _PAINT[kind](ImageDraw.Draw(im), _Frame(landmarks, rng, jitter), rng)
    return np.asarray(im)
