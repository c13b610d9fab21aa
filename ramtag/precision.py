"""The precision policy: the one place that decides in which number format the model runs.

A ``Precision`` is a small value: the name every output records, the tensor format of the weights
and activations, and how the tagger must treat it (int8 linear layers, one image per pass, an fp16
overflow redone in a wider format). ``resolve`` turns what a user asked for (``auto`` included) and
the device into that value once, before anything is loaded; the tagger, the Ray actors, ``bench``
and ``eval`` all use it, so ``auto`` is never recorded and never decided twice.

Nothing here imports torch at module level: a bad ``--precision`` fails before torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .cpu import ENV, native_bf16, native_bf16_set
from .errors import UsageError

if TYPE_CHECKING:
    import torch

GPU_TYPES = frozenset({"cuda", "mps"})


@dataclass(frozen=True)
class Precision:
    """How the model computes: ``name`` is what outputs record and resume compares."""

    name: str
    tensor_format: str  # the torch dtype of weights and activations: float32, bfloat16, float16
    quantized: bool = False  # linear layers in int8 (dynamic quantisation), CPUs only
    per_image: bool = False  # one image per model pass: int8 scales each input by its own range
    overflow_retry: bool = False  # a batch whose logits are not finite is redone in a wider format
    bf16_islands: bool = False  # chosen blocks compute in bf16 inside an fp32 model (model/mixed.py)

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.tensor_format)

    @property
    def bf16_recipe(self) -> str | None:
        """The blocks its islands compute in bf16, as outputs record them (None: no islands)."""
        return BF16_RECIPE if self.bf16_islands else None


# What bf16-mixed computes in bf16 (``model/mixed.py``), recorded with every output made with it, so
# that results of another recipe are never mixed; outputs from before the recipe was recorded used
# the first one.
BF16_RECIPE = "swin0.mlp,swin1.mlp,head.ffn"
FIRST_BF16_RECIPE = "swin.mlp,head.ffn"


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", "float32"),
    "bf16": Precision("bf16", "bfloat16"),
    # An fp32 model whose decoder feed-forward layers and early Swin MLPs compute in bf16 (model/mixed.py).
    "bf16-mixed": Precision("bf16-mixed", "float32", bf16_islands=True),
    "fp16": Precision("fp16", "float16", overflow_retry=True),
    # fp32 activations between int8 matrix products; int8 scales each call's input by its range, so
    # an image in a batch would move with its neighbours: one image per pass keeps its scores its own.
    "int8": Precision("int8", "float32", quantized=True, per_image=True),
}
CHOICES: tuple[str, ...] = ("auto", *PRECISIONS)


_DTYPES = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def check(name: str | None) -> str:
    """The precision name, lower-cased, or a usage error naming the choices. No torch needed. A
    torch dtype is taken by the name of its format (``torch.bfloat16``: bf16)."""
    if name is not None and not isinstance(name, str):
        name = _DTYPES.get(str(name), str(name))
    name = (name or "auto").lower()
    if name not in CHOICES:
        raise UsageError(f"unknown precision {name!r}; use {', '.join(CHOICES[:-1])} or {CHOICES[-1]}")
    return name


def resolve(name: str | None, device: Any, *, detect: bool = True) -> Precision:
    """What ``name`` means on ``device`` (a ``torch.device`` or its type, ``"cpu"``, ``"cuda"``...).

    ``auto`` on a CPU is bf16-mixed where the CPU has native bf16 matrix products (AMX, AVX-512
    BF16: ``cpu.native_bf16``; not looked for with ``detect=False``) and fp32 elsewhere, where bf16
    is several times slower than fp32. On GPUs it is fp16: on an H100 the full-size RAM++ ran as
    fast in fp16 as in bf16 (1.62 and 1.60 ms per image at batch 64), and fp16's longer mantissa kept
    scores about 8x closer to fp32 (max difference 9.9e-4 against 7.5e-3; tags over the thresholds
    agreeing at Jaccard 0.992 against 0.961; random weights, 64 images). A batch that overflows
    fp16's range is redone in a wider format (``overflow_fallback``).
    """
    name = check(name)
    kind = getattr(device, "type", device)
    if name == "auto":
        if kind in GPU_TYPES:
            return PRECISIONS["fp16"]
        return PRECISIONS["bf16-mixed" if detect and native_bf16() else "fp32"]
    if PRECISIONS[name].quantized and kind != "cpu":
        raise UsageError(f"--precision {name} runs on CPUs only; on {kind} use fp16 (the default there)")
    return PRECISIONS[name]


def why_auto(precision: Precision, device: Any) -> str:
    """What ``auto`` chose on ``device`` and why, in a few words, with how to choose otherwise."""
    kind = getattr(device, "type", device)
    if kind in GPU_TYPES:
        return f"{precision.name} on the GPU (a batch that overflows is redone); --precision fp32 for exact scores"
    said = native_bf16_set()
    if precision.bf16_islands:
        has = f"{ENV}=1 says this CPU has native bf16" if said else f"this CPU has {native_bf16()}"
        return f"{precision.name} (bf16 matrix products): {has}; --precision fp32 for exact scores"
    if said is False:
        return f"{precision.name}: {ENV}=0 says this CPU has no native bf16"
    return f"{precision.name}: this CPU has no native bf16 (AMX or AVX-512 BF16), so bf16 would be slower here"


def overflow_fallback(device: torch.device) -> Precision:
    """Where an fp16 batch overflowed: bf16 (fp16's range at fp32's exponent) if the device has
    it, else fp32."""
    import torch

    if device.type == "cuda":
        wide = torch.cuda.is_bf16_supported()
    else:
        wide = device.type == "cpu"
    return PRECISIONS["bf16" if wide else "fp32"]
