"""Requirement profiles: thresholds on the ISO/IEC 29794-5 components, each with its
source (the shipped default: ICAO portrait requirements, ``assets/profiles/icao.json``),
and what a failed requirement tells the subject to change.

A profile is JSON: ``{"name", "description", "requirements": {Component: rule}}`` where a
rule holds one of ``min`` / ``max`` / ``abs_max`` (on the native value) or ``scalar_min``
(on the 0–100 scalar), and a ``source`` text.  A requirement passes (True), fails
(False), or is None when the component was not assessed or the profile has no rule.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import QMagError
from .components import COMPONENTS, Component

__all__ = [
    "Profile",
    "load_profile",
    "parse_profile",
    "profile_json",
    "default_profile",
    "REGION_OF",
    "advice",
    "RULES",
]

RULES = ("min", "max", "abs_max", "scalar_min")
#: the PLQ face region a component concerns (where in the face the fix is)
REGION_OF = {"EyesOpen": "eyes", "EyesVisible": "eyes", "MouthClosed": "mouth", "NoHeadCoverings": "forehead"}
_MAX_PROFILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Profile:
    """Named thresholds: ``requirements`` {component: (rule, level, source)}."""

    name: str
    description: str
    requirements: dict

    def passes(self, c: Component) -> bool | None:
        """Whether component ``c`` meets its requirement (None: no rule, or not assessed)."""
        req = self.requirements.get(c.name)
        if req is None:
            return None
        rule, level, _ = req
        value = c.scalar if rule == "scalar_min" else c.native
        if value is None:
            return None
        if rule == "min" or rule == "scalar_min":
            return bool(value >= level)
        if rule == "max":
            return bool(value <= level)
        return bool(abs(value) <= level)

    def limit_text(self, name: str) -> str:
        """The requirement as a short text (``≥ 90``, ``|x| ≤ 5``, ``scalar ≥ 50``)."""
        rule, level, _ = self.requirements[name]
        return {"min": f"≥ {level:g}", "max": f"≤ {level:g}", "abs_max": f"within ±{level:g}"}.get(
            rule, f"scalar ≥ {level:g}"
        )


def _parse(doc, where: str) -> Profile:
    def bad(what: str):
        raise QMagError(f"{where}: {what}")

    if not isinstance(doc, dict) or not isinstance(doc.get("requirements"), dict):
        bad('expected a JSON object with "requirements": {component: rule}')
    reqs = {}
    for name, r in doc["requirements"].items():
        if name not in COMPONENTS:
            bad(f"unknown component {str(name)[:60]!r} (expected one of the ISO/IEC 29794-5 names in docs/formats.md)")
        rules = [k for k in RULES if isinstance(r, dict) and k in r]
        if len(rules) != 1:
            bad(f"requirement {name}: expected exactly one of {', '.join(RULES)}")
        level = r[rules[0]]
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
            bad(f"requirement {name}: {rules[0]} must be a finite number, got {str(level)[:40]!r}")
        if rules[0] == "scalar_min" and not 0 <= level <= 100:
            bad(f"requirement {name}: scalar_min must lie in 0-100, got {level}")
        source = r.get("source", "")
        if not isinstance(source, str) or len(source) > 2000:
            bad(f"requirement {name}: source must be a text of at most 2000 characters")
        reqs[name] = (rules[0], float(level), source)
    name, desc = doc.get("name", "profile"), doc.get("description", "")
    if not isinstance(name, str) or not isinstance(desc, str) or len(name) > 200 or len(desc) > 4000:
        bad("name and description must be texts (at most 200 and 4000 characters)")
    return Profile(name, desc, reqs)


def parse_profile(data: bytes, where: str) -> Profile:
    """A profile from JSON bytes (at most 1 MiB; checked field by field; errors start
    with ``where``, the file's name)."""
    if len(data) > _MAX_PROFILE_BYTES:
        raise QMagError(f"{where}: a requirement profile is at most {_MAX_PROFILE_BYTES >> 20} MiB")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise QMagError(f"{where}: not a JSON requirement profile ({str(e)[:80]})") from None
    return _parse(doc, where)


def load_profile(path: str | os.PathLike) -> Profile:
    """A profile from a JSON file (checked field by field; errors name the file)."""
    from ..safeio import read_bytes

    data = read_bytes(path, max_bytes=_MAX_PROFILE_BYTES, what="requirement profile", name=str(path))
    return parse_profile(data, str(path))


def profile_json(p: Profile) -> str:
    """The profile as the JSON that :func:`load_profile` reads back."""
    reqs = {n: {rule: level, "source": src} for n, (rule, level, src) in p.requirements.items()}
    return json.dumps({"name": p.name, "description": p.description, "requirements": reqs}, indent=2) + "\n"


@lru_cache(maxsize=1)
def default_profile() -> Profile:
    """The shipped ICAO portrait profile (read once per process; treat it as read-only)."""
    path = resources.files("qmag_core") / "assets" / "profiles" / "icao.json"
    return _parse(json.loads(path.read_text(encoding="utf-8")), "icao.json")


def _pose(name: str, v: float, limit: str) -> str:
    a = abs(v)
    if name == "HeadPoseYaw":
        side, fix = ("your left", "your right") if v > 0 else ("your right", "your left")
        return f"head turned {a:.0f}° to {side}: turn it {a:.0f}° to {fix} and look at the camera (yaw {limit})"
    if name == "HeadPosePitch":
        how, fix = ("raised", "lower") if v > 0 else ("lowered", "raise")
        return f"chin {how} {a:.0f}°: {fix} your chin {a:.0f}° (pitch {limit})"
    side = "left" if v > 0 else "right"
    return f"head tilted {a:.0f}° toward your {side} shoulder: hold it upright (roll {limit})"


def advice(c: Component, profile: Profile) -> str:
    """What to change for a failed requirement, with the measured value and the limit."""
    v, n, lim = c.native, c.name, profile.limit_text(c.name)
    text = {
        "SingleFacePresent": lambda: "more than one face in the photo: only the subject may be seen",
        "EyesOpen": lambda: (
            f"eyes closed or nearly closed (opening {v:.3f} of the eye-chin distance, {lim}): open both eyes"
        ),
        "MouthClosed": lambda: f"mouth open (opening {v:.2f} of the eye-chin distance, {lim}): close your mouth",
        "EyesVisible": lambda: (
            f"eyes covered ({100 * v:.0f}% of an eye's zone unlike skin or eye): remove "
            "sunglasses or tinted glasses, keep hair and hands away from the eyes"
        ),
        "NoHeadCoverings": lambda: (
            f"forehead covered ({100 * v:.0f}% of it unlike skin): remove the cap, hat or headband"
        ),
        "InterEyeDistance": lambda: (
            f"face too small: {v:.0f} px between the eyes, {lim} needed — move closer or use a higher resolution"
        ),
        "HeadSize": lambda: (
            "head too "
            + ("small" if v < 0.45 else "large")
            + f" in the frame (eye-chin distance {100 * v:.0f}% of the height, about 45% expected): "
            + ("move closer or crop tighter" if v < 0.45 else "move back or crop wider")
        ),
        "LeftwardCrop": lambda: (
            f"face too near the left edge ({v:.2f} eye distances, {lim}): move it toward the centre"
        ),
        "RightwardCrop": lambda: (
            f"face too near the right edge ({v:.2f} eye distances, {lim}): move it toward the centre"
        ),
        "MarginAbove": lambda: (
            f"too little space above the eyes ({v:.2f} eye-chin distances, {lim}): lower the "
            "camera's aim or crop higher"
        ),
        "MarginBelow": lambda: (
            f"too little space below the eyes ({v:.2f} eye-chin distances, {lim}): show the chin and the neck"
        ),
        "LuminanceMean": lambda: (
            f"face too {'dark' if v < 0.5 else 'bright'} (mean luminance {v:.2f} of 1): "
            + ("add light" if v < 0.5 else "reduce the light or the exposure")
        ),
        "UnderExposurePrevention": lambda: f"{100 * v:.0f}% of the face is nearly black: add light on the face",
        "OverExposurePrevention": lambda: f"{100 * v:.0f}% of the face is burnt out: reduce the light or exposure",
        "Sharpness": lambda: f"photo blurred (sharpness {v:.1f}, scalar {c.scalar}): hold still and focus",
        "CompressionArtifacts": lambda: f"strong JPEG block artefacts ({v:.2f}): save the photo at a higher quality",
    }
    if n.startswith("HeadPose"):
        return _pose(n, v, lim)
    return text[n]() if n in text else f"{n} fails its requirement ({lim}; measured {v:.3g})"
