"""Choosing the device and the numeric precision."""

from __future__ import annotations

import torch

from .errors import UsageError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.qint8}
"""``int8`` (``torch.qint8`` here) is not a tensor format but a mode: fp32 activations, with the
linear layers' weights in int8 and each input quantised on the fly (``ramtag.tagger``); CPUs only."""


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for but MPS is not available; use --device cpu")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise UsageError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is fp32 on CPU (exact scores) and fp16 on GPUs.

    On an H100 the full-size RAM++ ran as fast in fp16 as in bf16 (1.62 and 1.60 ms per image at
    batch 64), and fp16's longer mantissa kept scores about 8x closer to fp32 (max difference 9.9e-4
    against 7.5e-3; tags over the thresholds agreeing at Jaccard 0.992 against 0.961; random
    weights, 64 images). A batch that overflows fp16's range is redone in bf16 (``Tagger.scores``).
    On CPUs without native bf16, half precision is several times slower than fp32.
    """
    name = (name or "auto").lower()
    if name == "auto":
        return torch.float16 if device.type in {"cuda", "mps"} else torch.float32
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}; use auto, fp32, bf16, fp16 or int8")
    if name == "int8" and device.type != "cpu":
        raise UsageError(f"--precision int8 runs on CPUs only; on {device.type} use fp16 (the default there)")
    return PRECISIONS[name]


def default_batch_size(device: torch.device) -> int:
    """4 on CPUs, 64 on GPUs.

    On a CPU the model is bound by matrix products that already have thousands of rows per image
    (4,585 tag queries), so batching gains little and large batches spill caches: the full-size Swin
    measured 1.74, 1.73, 1.58 and 1.96 s/image at batch 1, 2, 4 and 8 (same process, 2-core AVX2
    machine). GPUs need large batches to fill: on an H100 in bf16 the model took 1.75, 1.60, 1.57
    and 1.56 ms per image at batch 32, 64, 128 and 256, with 2.5, 4.4, 8.1 and 15.6 GB of GPU
    memory at its peak, so 64 takes most of the gain and still fits an 8 GB card.
    """
    return 4 if device.type == "cpu" else 64


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in PRECISIONS.items()}[dtype]
