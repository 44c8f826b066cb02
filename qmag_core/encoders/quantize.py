"""int8 graphs of an exported encoder: onnxruntime's static quantization, calibrated on
aligned crops of real photos.

Weights are quantized per output channel (int8, symmetric) and activations per tensor
(uint8) from the ranges the calibration crops produce; the graph stays QDQ, so every
onnxruntime build runs it.  The quality head's last layers are left in float (the
length of the embedding is q: a per-tensor uint8 grid there would round q itself).  The
result carries the float graph's ``qmag.*`` metadata with ``-int8`` added to its key, so
caches and params keep it apart.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import QMagError

__all__ = ["quantize_int8", "INT8_SUFFIX"]

#: appended to the key of an int8 graph
INT8_SUFFIX = "-int8"


class _Crops:
    """onnxruntime's CalibrationDataReader protocol over (N, S, S, 3) uint8 crops."""

    def __init__(self, crops: np.ndarray, batch: int = 16):
        self.batches = [
            {"pixels": np.ascontiguousarray(crops[k : k + batch].transpose(0, 3, 1, 2), np.float32)}
            for k in range(0, len(crops), batch)
        ]
        self.k = 0

    def get_next(self):
        if self.k >= len(self.batches):
            return None
        self.k += 1
        return self.batches[self.k - 1]

    def rewind(self):
        self.k = 0


def _float_tail(model) -> list[str]:
    """Nodes after the last convolution (pooling, the projection, the quality head):
    kept in float, where rounding would move q and the descriptor most."""
    nodes = list(model.graph.node)
    last_conv = max((k for k, n in enumerate(nodes) if n.op_type == "Conv"), default=-1)
    return [n.name for n in nodes[last_conv + 1 :] if n.name]


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    crops: np.ndarray,
    *,
    float_tail: bool = True,
    op_types: tuple[str, ...] | None = None,
    method: str = "minmax",
) -> dict:
    """Write the int8 graph of the float export ``fp32_path`` to ``out_path`` (atomically),
    calibrated on ``crops`` (N, S, S, 3) uint8 aligned as the encoder expects; returns
    the metadata written."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise QMagError("int8 export needs onnx and onnxruntime: pip install 'qmag-studio[onnx]'") from None
    from ..outputs import atomic_path

    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.dtype != np.uint8 or len(crops) < 8:
        raise QMagError(f"calibration needs at least 8 aligned uint8 crops (N, S, S, 3), got {crops.shape}")
    src = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in src.metadata_props}
    if "qmag.encoder_key" not in meta:
        raise QMagError(f"{fp32_path}: not a QMagFace Studio export (quantize the graph qmag export-onnx writes)")
    meta["qmag.encoder_key"] += INT8_SUFFIX
    if "qmag.descriptor.encoder_key" in meta:
        meta["qmag.descriptor.encoder_key"] += INT8_SUFFIX
    meta["qmag.int8"] = f"static QDQ, per-channel int8 weights, uint8 activations, {len(crops)} calibration crops"
    with atomic_path(out_path) as tmp:
        pre = tmp + ".pre.onnx"
        try:
            quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)
            exclude = _float_tail(onnx.load(pre)) if float_tail else []
            quantize_static(
                pre,
                tmp,
                _Crops(crops),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "percentile": CalibrationMethod.Percentile,
                    "entropy": CalibrationMethod.Entropy,
                }[method],
                nodes_to_exclude=exclude,
                op_types_to_quantize=list(op_types) if op_types else None,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        finally:
            Path(pre).unlink(missing_ok=True)
        model = onnx.load(tmp)
        del model.metadata_props[:]
        for k, v in meta.items():
            p = model.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(model, tmp)
    return meta
