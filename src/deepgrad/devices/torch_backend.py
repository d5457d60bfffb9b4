"""The PyTorch backend: parameters as torch tensors on a CPU or a CUDA device.

deepgrad's math (network.py, activations.py, losses.py, optimizers.py) takes its array
namespace from its inputs, so the same forward, backward and update code runs on torch
tensors; no autograd is involved. This module is the boundary around that math:

- ``resolve(backend, device)`` validates a backend name and a device;
- ``move_params`` converts a parameter dict between NumPy and torch (initial parameters
  are always drawn in NumPy, so the same seed gives the same network on every backend);
- ``check_inputs`` enforces one rule for the arrays handed to a torch network: they are
  either all host arrays (NumPy, lists), which deepgrad copies to the network's device, or
  all torch tensors on the network's device; mixing the two is a ``TypeError``;
- ``place_training_data`` puts a training set on the device once, when it fits.

torch is optional and imported only when a torch backend is asked for.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "BACKENDS",
    "TorchUnavailableError",
    "import_torch",
    "resolve",
    "backend_of",
    "device_of",
    "move_params",
    "check_inputs",
    "as_device_array",
    "place_training_data",
    "gather_batch",
]

BACKENDS = ("numpy", "torch")
INSTALL_HINT = (
    "install PyTorch: `pip install torch==2.13.0` (CPU build) or `pip install deepgrad[torch]`; "
    "for CUDA see https://pytorch.org/get-started/locally/"
)
# Upload the training set only if it takes at most this fraction of the free device memory.
DEVICE_MEMORY_FRACTION = 0.6


class TorchUnavailableError(ImportError, ValueError):
    """backend="torch" was asked for but PyTorch is not installed."""


def import_torch():
    """Import torch lazily; a clear error that says how to install it when missing."""
    try:
        import torch
    except ImportError as exc:
        raise TorchUnavailableError(
            f"backend='torch' needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from exc
    return torch


def resolve(backend: Any, device: Any = None):
    """Validate (backend, device); return (backend, device) with device a torch.device or None.

    ``backend="numpy"`` allows ``device`` None or "cpu". ``backend="torch"`` allows "cpu",
    "cuda", "cuda:<index>" or a ``torch.device``; None picks "cuda" when a GPU is visible,
    else "cpu".
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "numpy":
        if device is not None and str(device) != "cpu":
            raise ValueError(
                f"device must be None or 'cpu' for backend='numpy', got {device!r}; "
                f"use backend='torch' for device={device!r}"
            )
        return "numpy", None
    torch = import_torch()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} needs a CUDA GPU, but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}); use device='cpu'"
            )
        n = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if not 0 <= index < n:
            raise ValueError(f"device={device!r}: there are {n} CUDA device(s), indices 0..{n - 1}")
        dev = torch.device("cuda", index)
    return "torch", dev


def backend_of(x: Any) -> str:
    """ "torch" for torch tensors, "numpy" otherwise."""
    return "torch" if array_api_compat.is_torch_array(x) else "numpy"


def device_of(x: Any):
    """The torch.device of a tensor, None for anything else."""
    return x.device if array_api_compat.is_torch_array(x) else None


def move_params(params: dict, backend: str, device, dtype: str) -> dict:
    """The parameter dict on (backend, device) in ``dtype``; copies, never aliases."""
    if backend == "numpy":
        from deepgrad.core.backend import to_numpy

        return {k: np.array(to_numpy(v), dtype=dtype) for k, v in params.items()}
    torch = import_torch()
    tdtype = getattr(torch, dtype)
    out = {}
    for k, v in params.items():
        if array_api_compat.is_torch_array(v):
            out[k] = v.detach().to(device=device, dtype=tdtype, copy=True).contiguous()
        else:
            out[k] = torch.tensor(np.asarray(v, dtype=dtype), dtype=tdtype, device=device)
    return out


def _describe(x: Any) -> str:
    if array_api_compat.is_torch_array(x):
        return f"a torch tensor on {x.device}"
    return f"a {type(x).__name__}"


def check_inputs(params: dict, **arrays) -> None:
    """Raise TypeError when the arrays of one call do not fit the network's backend.

    A NumPy network takes no torch tensors. A torch network on device D takes either only
    host arrays (NumPy, lists; copied to D) or only torch tensors on D.
    """
    arrays = {k: v for k, v in arrays.items() if v is not None}
    tensors = {k: v for k, v in arrays.items() if array_api_compat.is_torch_array(v)}
    if not tensors:
        return
    W = params["W1"]
    if not array_api_compat.is_torch_array(W):
        name, t = next(iter(tensors.items()))
        raise TypeError(
            f"{name} is {_describe(t)} but the network's parameters are NumPy arrays; "
            f"pass NumPy arrays, or move the network with net.to('torch', '{t.device}')"
        )
    for name, t in tensors.items():
        if t.device != W.device:
            raise TypeError(
                f"{name} is {_describe(t)} but the network is on {W.device}; move it with "
                f"{name}.to('{W.device}') or the network with net.to('torch', '{t.device}')"
            )
    hosts = [k for k in arrays if k not in tensors]
    if hosts:
        raise TypeError(
            f"mixing NumPy arrays and torch tensors: {hosts[0]} is {_describe(arrays[hosts[0]])} "
            f"but {next(iter(tensors))} is a torch tensor on {W.device}; pass all of them as "
            f"tensors on {W.device} or all as NumPy arrays"
        )


def as_device_array(x: Any, like: Any, dtype: str | None = None):
    """``x`` (NumPy, list or tensor) as a tensor on ``like``'s device (dtype: ``like``'s)."""
    torch = import_torch()
    tdtype = like.dtype if dtype is None else getattr(torch, dtype)
    if not array_api_compat.is_torch_array(x):
        x = torch.tensor(np.asarray(x))  # a copy: read-only arrays are fine, no aliasing
    return x.to(device=like.device, dtype=tdtype)


def _fits_on_device(nbytes: int, device) -> bool:
    torch = import_torch()
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_FRACTION * free


def place_training_data(X, like, dtype: str, chunk_rows: int = 1 << 18):
    """The training inputs for a torch network whose parameters look like ``like``.

    Tensors are converted to the network's dtype on its device. A NumPy array (or memory
    map) is uploaded once, in chunks of ``chunk_rows`` rows (so a memory map never has to
    be read into host memory as a whole), when it takes at most 60% of the free device
    memory; otherwise it stays on the host and is gathered and uploaded batch by batch.
    Memory maps are checked for NaN/inf chunk by chunk while uploading.
    """
    torch = import_torch()
    if array_api_compat.is_torch_array(X):
        return X.to(dtype=getattr(torch, dtype)).contiguous()
    m, n = X.shape
    itemsize = np.dtype(dtype).itemsize
    if like.device.type == "cpu" and not isinstance(X, np.memmap):
        arr = np.ascontiguousarray(X, dtype=dtype)  # no copy when it can (training never
        if not arr.flags.writeable:  # writes to X), but torch wants writable memory
            arr = arr.copy()
        return torch.from_numpy(arr)
    if like.device.type == "cpu" or not _fits_on_device(m * n * itemsize, like.device):
        return X  # stays on the host: gathered per batch
    out = torch.empty((m, n), dtype=getattr(torch, dtype), device=like.device)
    for s in range(0, m, chunk_rows):
        chunk = np.asarray(X[s : s + chunk_rows], dtype=dtype)
        if isinstance(X, np.memmap) and not np.all(np.isfinite(chunk)):
            raise ValueError(f"X contains NaN or inf in rows {s}..{s + len(chunk) - 1}")
        out[s : s + len(chunk)].copy_(torch.from_numpy(chunk))
    return out


def gather_batch(X, Y, idx: np.ndarray, dtype: str, check_finite: bool):
    """Rows ``idx`` of (X, Y) as tensors on Y's device; X may be a tensor or host array."""
    torch = import_torch()
    if array_api_compat.is_torch_array(X):
        idx_t = torch.from_numpy(idx).to(X.device, non_blocking=True)
        return X.index_select(0, idx_t), Y.index_select(0, idx_t)
    Xb = np.asarray(X[idx], dtype=dtype)
    if check_finite and not np.all(np.isfinite(Xb)):
        raise ValueError(f"X contains NaN or inf in rows {idx[~np.isfinite(Xb).all(1)][:5]}")
    idx_t = torch.from_numpy(idx).to(Y.device, non_blocking=True)
    return torch.from_numpy(Xb).to(Y.device, non_blocking=True), Y.index_select(0, idx_t)
