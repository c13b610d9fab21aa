"""Linear layers whose weights oneDNN lays out once: the CPU's matrix products without per-call work.

An ``nn.Linear`` on a CPU hands its fp32 product to MKL's general matrix product and its bf16 one to
oneDNN, which either way rearranges the weight into the blocked layout its kernels read on every call.
Here each weight is rearranged once, when the model is prepared (``torch.ops.mkldnn``'s
``_reorder_linear_weight``, the same step ``torch.compile`` takes for a frozen model on a CPU), and
each call runs oneDNN's product on it.

On a 2-core AMD EPYC (Zen 4) this made the full-size RAM++ about 1.16x faster in fp32 (backbone
1.40 -> 1.19 s, head 0.73 -> 0.66 s an image): Swin's products ran 10-50% faster, most in its first
stage (9,216 tokens by 192 channels). With oneDNN and MKL capped at AVX2 there, 1.08x. Scores
differ from ``nn.Linear``'s only by the rounding of another summation order (README, Precision on
CPUs). The weights take the same memory. (Computing the GELU after the MLPs' first layer inside
that layer's product, which oneDNN can do, saved no measurable time on the whole model.)

Only x86 CPUs, where oneDNN has been measured against MKL; bf16 layers only where oneDNN has native
bf16 kernels (elsewhere its reference code would be far slower than PyTorch's own emulation).
``RAMTAG_PACKED_LINEAR=0`` keeps PyTorch's ``nn.Linear``.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from ..hostmem import FilePages

ENV = "RAMTAG_PACKED_LINEAR"
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


class PackedLinear(nn.Module):
    """A linear layer on a weight in oneDNN's blocked layout.

    It stays a linear layer to the rest of PyTorch: ``state_dict`` holds its ``weight`` (a copy in
    PyTorch's layout) and ``bias``; loading a state dict (``assign`` included), ``.to``,
    ``copy.deepcopy`` and pickling work; a weight moved to where oneDNN cannot take it (another
    format, a GPU) is kept plain and computed as ``nn.Linear`` does, and so is a call that autograd
    or autocast would need to see (oneDNN's operator has neither). Its weight and bias are not
    among ``parameters()``: it is for inference.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = linear.bias.detach().clone() if linear.bias is not None else None  # its own, as the weight
        self._keep(linear.weight.detach(), bias)

    def _keep(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        # Not parameters or buffers: oneDNN's layout is its own, which PyTorch's generic code for
        # them cannot read. Plain attributes, handled by the methods below instead.
        self.bias = bias
        if weight.device.type == "cpu" and _supported(weight.dtype):
            self.packed, self.plain = _pack_weight(weight), None
        else:
            self.packed, self.plain = None, weight

    @property
    def weight(self) -> torch.Tensor:
        """The weight in PyTorch's own layout (a copy when packed)."""
        return self.plain if self.packed is None else self.packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None or (x.requires_grad and torch.is_grad_enabled()) or _autocast():
            return F.linear(x, self.weight, self.bias)
        return _product(x, self.packed, self.bias)

    def _apply(self, fn, recurse: bool = True):  # .to(), .float(), .cpu()...
        self._keep(fn(self.weight), fn(self.bias) if self.bias is not None else None)
        return self

    def __getstate__(self) -> dict:  # pickle and copy.deepcopy: the plain weight, packed again after
        return {**self.__dict__, "plain": self.weight, "packed": None}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._keep(self.plain, self.bias)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.weight
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # As nn.Linear's: its pre-hooks run, missing and unexpected keys are reported, a tensor of
        # another shape is refused, and ``assign`` takes the tensors given rather than copying them.
        for hook in self._load_state_dict_pre_hooks.values():
            hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        own = {"weight": (self.out_features, self.in_features)}
        if self.bias is not None:
            own["bias"] = (self.out_features,)
        found = {}
        for name, shape in own.items():
            value = state_dict.get(prefix + name)
            if value is None:
                missing_keys.append(prefix + name)
            elif tuple(value.shape) != shape:
                error_msgs.append(
                    f"size mismatch for {prefix}{name}: copying a param with shape {tuple(value.shape)} from "
                    f"checkpoint, the shape in current model is {shape}."
                )
            else:
                found[name] = value
        if strict:
            unexpected_keys.extend(
                key for key in state_dict if key.startswith(prefix) and key[len(prefix):] not in own
                and key[len(prefix):] != "_extra_state"
            )
        if not found:
            return
        if local_metadata.get("assign_to_params_buffers", False):  # the tensors given, as they are
            weight = found["weight"].detach() if "weight" in found else self.weight
            bias = found["bias"].detach() if "bias" in found else self.bias
        else:
            weight, bias = self.weight, self.bias
            with torch.no_grad():
                weight = weight.copy_(found["weight"]) if "weight" in found else weight
                bias = bias.copy_(found["bias"]) if "bias" in found else bias
        self._keep(weight, bias)

    def extra_repr(self) -> str:
        layout = "oneDNN" if self.packed is not None else "plain"
        return f"in_features={self.in_features}, out_features={self.out_features}, {layout}"


def _autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4
        return torch.is_autocast_cpu_enabled()


def _pack_weight(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, None)


def _product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def enabled() -> bool:
    """Whether ``packed_linears`` changes anything on this machine: x86, oneDNN there and enabled
    (``torch.backends.mkldnn.enabled``), its operators working, and ``RAMTAG_PACKED_LINEAR`` not 0."""
    if os.environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return torch.backends.mkldnn.enabled and _supported(torch.float32)


def is_packed(model: nn.Module) -> bool:
    """Whether any of ``model``'s linear layers computes on a weight in oneDNN's layout."""
    return any(isinstance(module, PackedLinear) and module.packed is not None for module in model.modules())


def packed_linears(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with its fp32 and bf16 ``nn.Linear`` layers packed for oneDNN.
    Layers of other formats, and every layer where this machine does not qualify (``enabled``),
    stay as they are."""
    if not enabled():
        return model
    from ..hostmem import FilePages

    with FilePages() as pages:
        _pack(model, pages)
    return model


def _pack(module: nn.Module, pages: FilePages) -> None:
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear and _supported(child.weight.dtype):
            setattr(module, name, PackedLinear(child))
            # A weight read from a memory-mapped checkpoint (the converted-weights cache) would stay
            # in this process's memory beside its packed copy: 0.8 GB more for the full-size RAM++.
            # Released layer by layer, so that loading never holds both either.
            weight = child.weight
            pages.release(weight.data_ptr(), weight.numel() * weight.element_size())
        else:
            _pack(child, pages)


@functools.cache
def _supported(dtype: torch.dtype) -> bool:
    if platform.machine().lower() not in _X86 or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        checks = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        if checks is None or not checks():
            return False
    elif dtype != torch.float32:
        return False
    # The operators are internal to PyTorch: try them once, and keep nn.Linear where they differ.
    try:
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(40, 24, generator=generator).to(dtype)
        bias = torch.randn(40, generator=generator).to(dtype)
        x = torch.randn(3, 5, 24, generator=generator).to(dtype)
        with torch.no_grad():
            expected = F.linear(x, weight, bias).float()
            found = _product(x, _pack_weight(weight), bias).float()
    except (RuntimeError, AttributeError, TypeError):
        return False
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    return found.shape == expected.shape and bool(torch.allclose(found, expected, atol=tolerance, rtol=tolerance))
