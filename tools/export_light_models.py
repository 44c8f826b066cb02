"""Export the ONNX graphs the torch-free install runs (qmag_core/assets/onnx/).

* ``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``, ``mtcnn_onet.onnx``: facenet-pytorch 2.5.3's
  MTCNN networks with the weights from its wheel (MIT, licence beside them); P-Net with
  dynamic height and width, R-/O-Net with a dynamic batch axis; input ``input``
  float32 (B, 3, H, W) = (RGB − 127.5) / 128.
* ``builtin.onnx``: the built-in encoder with the shipped quality head, plus the backbone
  descriptor output that ``builtin-raw`` reads (``runtime_onnx.export_onnx``).

Run it again whenever the quality head changes (tests compare the file's key with the
package's); it prints each file's size and SHA-256 and checks every graph against torch.

    python -m tools.export_light_models
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch

from qmag_core.encoders import load_encoder
from qmag_core.encoders.onnx import SHIPPED_MODEL, OnnxEncoder, export_onnx, trace_to_onnx
from qmag_core.outputs import atomic_path
from qmag_core.vision.mtcnn_onnx import MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]

MTCNN_OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}


def export_mtcnn(out_dir: Path) -> None:
    import onnxruntime as ort
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    nets = {"pnet": (PNet(), (1, 3, 40, 52)), "rnet": (RNet(), (3, 3, 24, 24)), "onet": (ONet(), (3, 3, 48, 48))}
    for name, (net, shape) in nets.items():
        net.eval()
        x = torch.rand(*shape) * 2 - 1
        outs = MTCNN_OUTPUTS[name]
        axes = {"input": {0: "batch", 2: "height", 3: "width"} if name == "pnet" else {0: "batch"}}
        axes.update({o: {0: "batch"} for o in outs})
        f = out_dir / f"mtcnn_{name}.onnx"
        with atomic_path(f) as tmp:
            trace_to_onnx(net, x, tmp, inputs=["input"], outputs=outs, axes=axes)
        # check on another size than the one traced
        y = torch.rand(2, 3, 61, 47) * 2 - 1 if name == "pnet" else torch.rand(5, *shape[1:]) * 2 - 1
        with torch.no_grad():
            ref = [t.numpy() for t in net(y)]
        got = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"input": y.numpy()})
        err = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
        print(f"{f.name}: max |onnx - torch| {err:.2e}")
        assert err < 1e-4, f"{name}: ONNX disagrees with torch ({err})"


def compact_lookup(path: Path) -> None:
    """Store each large float initializer that takes at most 256 distinct values (the
    uint8-quantised tensors of face-api's weights) as uint8 indices into a float32 table,
    rebuilt exactly in the graph (Cast → Gather, folded by onnxruntime at load): the file
    shrinks about 3.5× with bit-identical weights."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    keep, nodes = [], []
    for init in g.initializer:
        v = numpy_helper.to_array(init)
        table, idx = np.unique(v, return_inverse=True) if v.dtype == np.float32 and v.size >= 4096 else ([], None)
        if idx is None or len(table) > 256:
            keep.append(init)
            continue
        n = init.name
        keep.append(numpy_helper.from_array(idx.reshape(v.shape).astype(np.uint8), f"{n}__q"))
        keep.append(numpy_helper.from_array(table.astype(np.float32), f"{n}__table"))
        nodes.append(helper.make_node("Cast", [f"{n}__q"], [f"{n}__i"], to=onnx.TensorProto.INT64))
        nodes.append(helper.make_node("Gather", [f"{n}__table", f"{n}__i"], [n], axis=0))
    del g.initializer[:]
    g.initializer.extend(keep)
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, tmp)


def main() -> None:
    import facenet_pytorch

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    export_mtcnn(MODEL_DIR)
    lic = Path(facenet_pytorch.__file__).resolve().parents[1] / "facenet_pytorch-2.5.3.dist-info" / "LICENSE.md"
    shutil.copyfile(lic, MODEL_DIR / "LICENSE-facenet-pytorch.md")
    enc = load_encoder("builtin", device="cpu")
    export_onnx(enc, SHIPPED_MODEL, descriptor_encoder=load_encoder("builtin-raw", device="cpu"))
    compact_lookup(SHIPPED_MODEL)
    crops = np.random.default_rng(0).integers(0, 256, (6, 150, 150, 3), dtype=np.uint8)
    for enc_id in ("builtin", "builtin-raw"):
        ref = load_encoder(enc_id, device="cpu").embed(crops)
        got = OnnxEncoder(SHIPPED_MODEL, device="cpu", descriptor=enc_id == "builtin-raw").embed(crops)
        rel = float(np.max(np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)))
        print(f"{SHIPPED_MODEL.name} as {enc_id}: max relative difference {rel:.2e}")
        assert rel < 1e-4
    for f in sorted(MODEL_DIR.glob("*.onnx")):
        print(f"{f.relative_to(ROOT)}  {f.stat().st_size:,} bytes  sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
