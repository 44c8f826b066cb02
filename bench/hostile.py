"""Hostile inputs built on purpose: ONNX graphs that lie in their metadata or name
external data they should not, and insightface .bin sets whose lists hold themselves.
The tests (tests/encoders/test_onnx_hostile.py) and bench_limits build them here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def forged_onnx(path: Path, meta: dict, *, external: tuple[str, int] | None = None) -> Path:
    """A tiny graph built with onnx.helper: pixels (N, 3, 150, 150) -> channel means
    (N, 3) @ W (3, 128) = embedding; quality and raw_length its norm; ``meta`` as the
    model's metadata; ``external``: W is declared to live in that file with that many
    bytes."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 128], np.linspace(-1, 1, 384, dtype=np.float32).tolist())
    if external is not None:
        w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 128])
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", external[0]), ("offset", "0"), ("length", str(external[1]))):
            e = w.external_data.add()
            e.key, e.value = k, v
    nodes = [
        helper.make_node("GlobalAveragePool", ["pixels"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["embedding"]),
        helper.make_node("ReduceL2", ["embedding"], ["q2"], axes=[1], keepdims=0),
        helper.make_node("Identity", ["q2"], ["quality"]),
        helper.make_node("Identity", ["q2"], ["raw_length"]),
        helper.make_node("Identity", ["embedding"], ["descriptor"]),
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "forged",
        [helper.make_tensor_value_info("pixels", f32, ["N", 3, 150, 150])],
        [
            helper.make_tensor_value_info("embedding", f32, ["N", 128]),
            helper.make_tensor_value_info("quality", f32, ["N"]),
            helper.make_tensor_value_info("raw_length", f32, ["N"]),
            helper.make_tensor_value_info("descriptor", f32, ["N", 128]),
        ],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    path.write_bytes(model.SerializeToString())
    return path


def shipped_meta() -> dict:
    """The ``qmag.*`` metadata of the shipped builtin graph."""
    import onnx

    from qmag_core.encoders.onnx import SHIPPED_MODEL

    m = onnx.load(str(SHIPPED_MODEL), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def self_referencing_bin(path: Path, depth: int = 0) -> Path:
    """A .bin (a few kB) whose issame_list holds itself (``depth`` 0) or ``depth`` levels
    of lists nested two wide (2**depth booleans if numpy explored it)."""
    same: list = []
    same.append(same)
    nested: list = [True]
    for _ in range(depth):
        nested = [nested, nested]
    path.write_bytes(pickle.dumps(([b"x"] * 2, same if depth == 0 else nested), protocol=2))
    return path
