"""Choosing the device: its name checked without torch, then resolved against the hardware."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu(:0)?|mps(:0)?|cuda(:\d+)?)$")
_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def check_device(name: str | Any | None) -> str:
    """The device name, lower-cased, or a usage error: what a typo costs before torch is imported.
    A ``torch.device`` is taken by its name."""
    name = str(name or "auto").strip().lower()
    if not _DEVICE.match(name):
        raise UsageError(f"unknown device {name!r}; use {_CHOICES}")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is a CUDA GPU, else Apple's MPS, else the CPU; a named device must be there."""
    import torch

    name = check_device(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


def default_batch_size(device: Any) -> int:
    """1 on CPUs, 64 on GPUs (``device``: a ``torch.device`` or its type).

    On a CPU the model is bound by matrix products that already have thousands of rows per image
    (9,216 tokens in Swin's first stage, 4,585 tag queries in the head), so batching gains nothing
    there, while a larger batch's activations spill the caches: the full-size RAM++ in fp32 took
    3.39, 3.71 and 3.86 s/image at batch 1, 2 and 4 (medians of 4 alternating rounds in one
    process, 2-core AVX2 EPYC; 3.33, 3.36 and 3.60 with glibc's 32 MB mmap ceiling), and
    `ramtag bench` ran 1.12-1.19x faster at batch 1 than at 4 in three alternating pairs, with
    14% less peak memory. (An earlier version had measured batch 4 fastest, 1.58 against 1.74
    s/image for Swin alone.) GPUs need large batches to fill: on an H100 in bf16 the model took
    1.75, 1.60, 1.57 and 1.56 ms per image at batch 32, 64, 128 and 256, with 2.5, 4.4, 8.1 and
    15.6 GB of GPU memory at its peak, so 64 takes most of the gain and still fits an 8 GB card.
    """
    return 1 if getattr(device, "type", device) == "cpu" else 64
