"""Building the network without initialising its weights: the checkpoint replaces every one.

Initialising Swin-L's 200 million weights only to overwrite them costs seconds. The usual way out,
building on PyTorch's meta device, costs seconds too: tensor operations on meta tensors run Python
reference kernels whose first call imports TorchDynamo (3 s on a 2-core machine, more than
``import torch``), and timm computes its index tables and attention masks with such operations.
So the network is built on the CPU while the initialisers its layers call do nothing: weights are
allocated but never written (no memory is touched until the strict load assigns the checkpoint's
tensors in their place), and the derived buffers are computed for real, as they must be.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# What nn.Linear, nn.Conv2d, timm's Swin and the tag embeddings call to fill their weights
# (LayerNorm's ones are cheap and kept).
_INITIALISERS = ("kaiming_uniform_", "uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "zeros_")
_LOCK = threading.Lock()


def _leave(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor


@contextmanager
def uninitialised() -> Iterator[None]:
    """While inside, modules built in this process leave their weights as allocated."""
    targets = [torch.nn.init]
    swin = sys.modules.get("timm.models.swin_transformer")
    if swin is not None:
        targets.append(swin)  # it imported timm's own trunc_normal_ by name
    with _LOCK:
        saved = [(target, name, getattr(target, name)) for target in targets for name in _INITIALISERS
                 if hasattr(target, name)]
        for target, name, _ in saved:
            setattr(target, name, _leave)
        try:
            yield
        finally:
            for target, name, original in saved:
                setattr(target, name, original)
