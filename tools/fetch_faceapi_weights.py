"""How the built-in encoder's weights were taken (documentation + verification).

The files in qmag_core/assets/faceapi come unchanged from the npm package
@vladmandic/face-api 1.7.15 (MIT licence, copied beside them as LICENSE):

    npm pack @vladmandic/face-api@1.7.15
    tar xzf vladmandic-face-api-1.7.15.tgz
    cp package/model/face_recognition_model.bin \\
       package/model/face_recognition_model-weights_manifest.json qmag_core/assets/faceapi/

face-api.js's faceRecognitionNet is a port of dlib's ResNet face descriptor network;
dlib's author released those weights into the public domain (trained on ~3 million
faces, avoiding LFW identities).  Users and CI never need npm: the files are committed.

    python -m tools.fetch_faceapi_weights [PACKAGE_DIR]   # verify (or re-copy from a package dir)
"""

import hashlib
import shutil
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "qmag_core" / "assets" / "faceapi"
FILES = {
    "face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
    "face_recognition_model-weights_manifest.json": "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
}


def main():
    if len(sys.argv) > 1:
        src = Path(sys.argv[1]) / "model"
        for name in FILES:
            shutil.copy(src / name, ASSETS / name)
    for name, want in FILES.items():
        got = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()
        print(f"{name}: {'OK' if got == want else 'MISMATCH'} {got}")
        if got != want:
            sys.exit(1)


if __name__ == "__main__":
    main()
