"""Rebuild ``qmag_core/assets/face_mesh/``: MediaPipe's face mesh and iris models with their licence,
taken from the Apache-2.0 ``mediapipe==0.10.14`` wheel on the package registry (checked
against the pinned sha256), and the frontal reference shape for head pose, the
symmetric generalised-Procrustes mean of the meshes of 300 original LFW photos of the
dev pairs' folds 1–3 persons (seeded; ../shared/data).

    python -m tools.build_face_mesh [--wheel FILE.whl] [--model-only] [--write]

Without ``--write`` it only reports what it would write (and how far the shape moved).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "qmag_core" / "assets" / "face_mesh"
WHEEL = "mediapipe==0.10.14"
MEMBERS = {
    "mediapipe/modules/face_landmark/face_landmark.tflite": "face_landmark.tflite",
    "mediapipe/modules/iris_landmark/iris_landmark.tflite": "iris_landmark.tflite",
    "mediapipe-0.10.14.dist-info/LICENSE": "LICENSE-mediapipe",
}


def _wheel(given: str | None, tmp: str) -> Path:
    if given:
        return Path(given)
    cmd = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:", "-d", tmp]
    subprocess.run(cmd, check=True, capture_output=True)
    return next(Path(tmp).glob("mediapipe-*.whl"))


def model_files(wheel: Path) -> dict[str, bytes]:
    """The shipped files from the wheel, the models checked against their pinned digests."""
    from qmag_core.vision.face_mesh import MODELS

    with zipfile.ZipFile(wheel) as z:
        out = {dst: z.read(src) for src, dst in MEMBERS.items()}
    for name, want in MODELS.items():
        digest = hashlib.sha256(out[name]).hexdigest()
        if digest != want:
            raise SystemExit(f"{wheel}: {name} has sha256 {digest}, expected {want}")
    return out


def reference(n: int = 300, seed: int = 0) -> np.ndarray:
    """The reference shape from ``n`` training-split photos (seeded)."""
    from bench import protocol as T
    from qmag_core.vision.align import FaceDetector, choose_face, load_image
    from qmag_core.vision.face_mesh import face_mesh
    from qmag_core.vision.head_pose import build_reference

    det = FaceDetector(runtime="onnx")
    train = T.split_paths()["train"]
    picks = [train[i] for i in np.random.default_rng(seed).choice(len(train), n, replace=False)]
    meshes = []
    for p in picks:
        img = load_image(str(T.PHOTOS / p))
        faces = det.detect(img)
        if faces:
            f = faces[choose_face(faces, (img.shape[1], img.shape[0]), "best")]
            meshes.append(face_mesh(img, f.landmarks).points)
    print(f"{len(meshes)} meshes from {n} photos of the training split")
    return build_reference(np.stack(meshes))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", default=None, help=f"a downloaded {WHEEL} wheel (default: pip download it)")
    ap.add_argument("--model-only", action="store_true", help="leave the reference shape as it is")
    ap.add_argument("--write", action="store_true", help="write the files (default: report only)")
    a = ap.parse_args(argv)
    from qmag_core.outputs import atomic_write

    with tempfile.TemporaryDirectory() as tmp:
        files = model_files(_wheel(a.wheel, tmp))
    for name, data in files.items():
        same = (ASSETS / name).is_file() and (ASSETS / name).read_bytes() == data
        print(f"{name}: {len(data)} bytes, {'unchanged' if same else 'new'}")
        if a.write and not same:
            with atomic_write(ASSETS / name, "wb") as fh:
                fh.write(data)
    if not a.model_only:
        ref = reference()
        old = ASSETS / "reference_shape.npy"
        if old.is_file():
            print(f"reference shape: largest change {np.abs(np.load(old) - ref).max():.2e}")
        if a.write:
            with atomic_write(old, "wb") as fh:
                np.save(fh, ref.astype(np.float32))
    print("written" if a.write else "nothing written (give --write)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
