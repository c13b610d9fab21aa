"""What this CPU does natively, as far as the precision policy needs to know: bf16 matrix products.

On CPUs with AMX or AVX-512 BF16, bf16 matrix products ran about 5x faster than fp32 (an Intel Xeon
of the Sapphire Rapids class); on CPUs without them PyTorch emulates bf16 and the same products ran
about 8x *slower* (an AMD EPYC with AVX2 only). So the default precision depends on the CPU, read
here from the operating system's flags (``/proc/cpuinfo``; elsewhere PyTorch's own CPU checks).

``RAMTAG_NATIVE_BF16=1`` or ``=0`` overrides what is found: for CPUs whose flags a hypervisor hides,
or to keep ``auto`` at fp32 on every machine of a mixed fleet.
"""

from __future__ import annotations

import functools
import os
import sys

ENV = "RAMTAG_NATIVE_BF16"
# oneDNN's ISA levels, lowest first: ONEDNN_MAX_CPU_ISA caps what PyTorch's matrix products use.
_ISA_LEVELS = (
    "sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni",
    "avx512_core_bf16", "avx10_1_512", "avx512_core_fp16", "avx10_1_512_amx", "avx512_core_amx",
    "avx10_1_512_amx_fp16", "avx512_core_amx_fp16",
)


def native_bf16() -> str | None:
    """The feature that makes bf16 matrix products fast here (``"AMX"``, ``"AVX-512 BF16"``), or
    None when there is none (bf16 is then slower than fp32)."""
    setting = native_bf16_set()
    if setting is not None:
        return f"{ENV}=1" if setting else None
    return _detected()


def emulates_fp16() -> bool:
    """Whether this is an x86 CPU without native fp16 matrix products (AVX-512 FP16 or AMX-FP16),
    where PyTorch emulates them: 8x (a 768-wide linear layer) to 100x (a 4585x768 by 768x3072
    product) slower than fp32 on an AMD EPYC with AVX-512 BF16. False where the system does not list
    the flags (PyTorch's own checks cannot tell AVX-512 FP16)."""
    flags = _listed_flags()
    return "avx2" in flags and not {"avx512_fp16", "amx_fp16"} & flags


def emulates_bf16() -> bool:
    """Whether this is an x86 CPU whose bf16 matrix products are emulated (no AMX or AVX-512 BF16,
    or ``RAMTAG_NATIVE_BF16=0``): there bf16 measured up to 8x slower than fp32. False where the
    system does not list the flags (ARM, macOS, Windows), which ``native_bf16`` cannot judge."""
    return "avx2" in _listed_flags() and native_bf16() is None


def native_bf16_set() -> bool | None:
    """What ``RAMTAG_NATIVE_BF16`` says (None: not set, or not a yes or no)."""
    setting = os.environ.get(ENV, "").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    return None


def _detected() -> str | None:
    return bf16_feature(cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"))


def bf16_feature(flags: frozenset[str], max_isa: str | None = None) -> str | None:
    """What ``native_bf16`` says of a CPU with ``flags`` when oneDNN is capped at ``max_isa``."""
    cap = (max_isa or "").strip().lower()
    level = _ISA_LEVELS.index(cap) if cap in _ISA_LEVELS else len(_ISA_LEVELS)
    if {"amx_bf16", "amx_tile"} <= flags and level >= _ISA_LEVELS.index("avx10_1_512_amx"):
        return "AMX"
    if "avx512_bf16" in flags and level >= _ISA_LEVELS.index("avx512_core_bf16"):
        return "AVX-512 BF16"
    return None


def cpu_flags() -> frozenset[str]:
    """The x86 feature flags of this CPU (``avx2``, ``avx512_bf16``, ``amx_bf16``...), or those of
    them PyTorch can tell where the system does not list them (once torch is imported)."""
    return _listed_flags() or _flags_from_torch()


@functools.cache
def _listed_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return parse_flags(info.read(1 << 16))  # the first processor's lines are enough
    except OSError:
        return frozenset()


def parse_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _flags_from_torch() -> frozenset[str]:
    if "torch" not in sys.modules:  # not worth importing torch for: without flags, fp32 is safe
        return frozenset()
    import torch

    checks = {"avx2": "_is_avx2_supported", "avx512_bf16": "_is_avx512_bf16_supported",
              "amx_bf16": "_is_amx_tile_supported", "amx_tile": "_is_amx_tile_supported"}
    found = set()
    for flag, name in checks.items():
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                found.add(flag)
        except RuntimeError:
            pass
    return frozenset(found)
