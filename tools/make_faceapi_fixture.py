"""Build tests/fixtures/faceapi_reference.npz: inputs + descriptors computed by face-api.js.

Inputs: four MagFace toy faces (Apache-2.0, ../shared/data/magface_toy) resized to
150×150, plus one seeded random image.  The descriptors come from the JavaScript model
(tools/faceapi_reference.js, tfjs cpu backend).  Run from the repository root:

    NODE_PATH=/path/with/node_modules python -m tools.make_faceapi_fixture /path/with/node_modules
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT.parent / "shared" / "data" / "magface_toy" / "toy_imgs"


def main(node_modules: str):
    imgs = [
        np.asarray(Image.open(TOY / f"{k}.jpg").convert("RGB").resize((150, 150), Image.BILINEAR)) for k in (0, 3, 6, 9)
    ]
    imgs.append(np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8))
    x = np.stack(imgs).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "in.bin")
        out = os.path.join(d, "out.json")
        x.tofile(inp)
        env = {**os.environ, "NODE_PATH": node_modules}
        subprocess.run(
            [
                "node",
                str(ROOT / "tools" / "faceapi_reference.js"),
                str(ROOT / "qmag_core" / "assets" / "faceapi"),
                inp,
                str(len(x)),
                out,
            ],
            check=True,
            env=env,
        )
        res = json.loads(Path(out).read_text())
    desc = np.asarray(res["descriptors"], dtype=np.float32)
    (ROOT / "tests" / "fixtures").mkdir(exist_ok=True)
    np.savez_compressed(
        ROOT / "tests" / "fixtures" / "faceapi_reference.npz",
        inputs=x,
        descriptors=desc,
        backend=np.asarray(res["backend"]),
        tfjs=np.asarray(res["tfjs"]),
    )
    print(f"{len(x)} descriptors from tfjs {res['tfjs']} ({res['backend']} backend)")


if __name__ == "__main__":
    main(sys.argv[1])
