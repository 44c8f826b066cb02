"""Write the shipped network as an ONNX face model in the insightface model-zoo
convention, without our metadata: one (N, 3, S, S) input (or NHWC), RGB,
(x - 127.5) / 127.5 on an ArcFace-S crop, one 128-d embedding output.  Inside, a fixed
resampling maps the ArcFace crop onto the dlib-150 chip the faceRecognitionNet port
reads.  Used by the tests and benches of third-party models (a real network, no
download).

    python -m tools.make_insightface_model OUT.onnx [--nhwc] [--size 112]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make(path: str | Path, *, nhwc: bool = False, size: int = 112) -> Path:
    import torch
    import torch.nn.functional as F

    from qmag_core.encoders.faceapi import load_faceapi_net
    from qmag_core.encoders.onnx import trace_to_onnx
    from qmag_core.vision.align import ARCFACE_112, DLIB_150, similarity_transform

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = load_faceapi_net()
            m = np.vstack([similarity_transform(ARCFACE_112.template * size / 112, DLIB_150.template), [0, 0, 1]])
            inv = np.linalg.inv(m)  # dlib-150 pixel -> input pixel
            v, u = np.mgrid[0:150, 0:150].astype(np.float64)
            xy = np.stack([u, v, np.ones_like(u)], -1) @ inv.T
            grid = (2 * xy[..., :2] + 1) / size - 1  # pixel centres, align_corners=False
            self.register_buffer("grid", torch.tensor(grid[None], dtype=torch.float32))

        def forward(self, x):
            if nhwc:
                x = x.permute(0, 3, 1, 2)
            px = x * 127.5 + 127.5
            img = F.grid_sample(px, self.grid.expand(x.shape[0], -1, -1, -1), align_corners=False)
            return self.net(img)

    example = torch.zeros(2, size, size, 3) if nhwc else torch.zeros(2, 3, size, size)
    axes = {"input.1": {0: "N"}, "fc1": {0: "N"}}
    trace_to_onnx(Net().eval(), example, str(path), inputs=["input.1"], outputs=["fc1"], axes=axes)
    return Path(path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--nhwc", action="store_true")
    ap.add_argument("--size", type=int, default=112)
    a = ap.parse_args()
    print(make(a.out, nhwc=a.nhwc, size=a.size))
