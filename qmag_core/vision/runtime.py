"""Which network runtime and device run a model: torch (the full install) or
onnxruntime (the light install, no torch), CPU or CUDA."""

from __future__ import annotations

import importlib.util

from ..errors import QMagError

__all__ = [
    "RUNTIMES",
    "limit_threads",
    "session_threads",
    "torch_available",
    "onnxruntime_available",
    "gpu_present",
    "resolve_runtime",
    "resolve_device",
]


RUNTIMES = ("auto", "torch", "onnx")

_THREADS = {"n": 0}


def limit_threads(n: int) -> None:
    """Run every network of this process on ``n`` threads (0: the runtime's default);
    a batch of worker processes sets 1 each, so the workers share the cores instead of
    each claiming all of them."""
    import os
    import sys

    _THREADS["n"] = int(n)
    if n:  # torch reads it when first imported; an already imported torch is told directly
        os.environ["OMP_NUM_THREADS"] = str(int(n))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(n))


def session_threads() -> int:
    """The thread count onnxruntime sessions are made with (0: its default)."""
    return _THREADS["n"]


def torch_available() -> bool:
    """True when torch and facenet-pytorch can be imported (the full install)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("torch", "facenet_pytorch"))
    except (ImportError, ValueError):
        return False


def onnxruntime_available() -> bool:
    """True when onnxruntime can be imported (the light install or ``[onnx]``)."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def gpu_present() -> bool:
    """Whether this machine has an NVIDIA driver loaded, found without importing torch
    (which takes seconds): the driver's /proc entry."""
    import os

    return os.path.exists("/proc/driver/nvidia/version")


def resolve_runtime(runtime: str = "auto") -> str:
    """ "auto" → "torch" in the full install, "onnx" without torch (``pip install .[onnx]``)."""
    if runtime not in RUNTIMES:
        raise QMagError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        if torch_available():
            return "torch"
        if importlib.util.find_spec("onnxruntime") is None:
            raise QMagError(
                "this needs a network runtime, and neither torch nor onnxruntime is installed: "
                "pip install 'qmag-studio[onnx]' (light, CPU) or 'qmag-studio[vision]' (torch, training, GPU)"
            )
        return "onnx"
    if runtime == "torch" and not torch_available():
        raise QMagError(
            "the torch runtime needs torch and facenet-pytorch: pip install 'qmag-studio[vision]' "
            "(or use --runtime onnx)"
        )
    return runtime


def resolve_device(device: str = "auto") -> str:
    """ "auto" → "cuda" when a GPU is available, else "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise QMagError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise QMagError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device
