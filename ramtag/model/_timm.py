"""Import timm without paying for ``torch._dynamo``: seconds off every start.

timm imports torchvision, whose ``ops.roi_align`` imports a function of ``torch._dynamo.utils``,
and a few of timm's own functions are marked ``torch.compiler.disable``: both load all of
TorchDynamo (sympy included) at import time, on a 2-core machine 2.7 s of a 3.5 s ``import timm``,
more than PyTorch's own import, for a compiler ramtag never runs. So while timm (and with it
torchvision) is imported, ``torch._dynamo`` is a stand-in with just those two names, each doing the
real thing when first called: ``is_compile_supported`` asks the real TorchDynamo, and a function
marked ``disable`` is disabled by the real one the first time it runs (torchvision and timm use
them only under ``torch.compile``, which imports TorchDynamo anyway). Afterwards the stand-in is
gone and ``import torch._dynamo`` works as ever. Where torchvision or TorchDynamo is loaded already, or the
stand-in is not enough (a later torchvision wanting more of TorchDynamo at import), timm is imported
the ordinary way.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

_STAND_INS = ("torch._dynamo", "torch._dynamo.utils")


def is_compile_supported(device_type: str) -> bool:
    """TorchDynamo's own answer, imported when first asked."""
    from torch._dynamo.utils import is_compile_supported as real

    return real(device_type)


def disable(fn: Callable[..., Any] | None = None, recursive: bool = True, *, reason: str | None = None) -> Any:
    """``torch._dynamo.disable``, applied when ``fn`` is first called."""
    if fn is None:
        return functools.partial(disable, recursive=recursive, reason=reason)
    real: Callable[..., Any] | None = None

    @functools.wraps(fn)
    def deferred(*args: Any, **kwargs: Any) -> Any:
        nonlocal real
        if real is None:
            import torch._dynamo

            real = torch._dynamo.disable(fn, recursive, reason=reason)
        return real(*args, **kwargs)

    return deferred


def import_timm() -> None:
    """Import ``timm.models`` (and so timm's layers and torchvision), without TorchDynamo if it can."""
    if "timm.models" in sys.modules or "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        import timm.models  # noqa: F401 - nothing to save
        return
    import torch

    package = types.ModuleType("torch._dynamo")
    package.__path__ = []  # a package with no submodules but ``utils``
    package.disable = disable  # type: ignore[attr-defined]
    utils = types.ModuleType("torch._dynamo.utils")
    utils.is_compile_supported = is_compile_supported  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules.update(zip(_STAND_INS, (package, utils)))
    try:
        import timm.models  # noqa: F401
        return
    except Exception:  # noqa: BLE001 - whatever the stand-in lacked: the ordinary import below
        _forget("timm", "torchvision")
    finally:
        for name in _STAND_INS:
            sys.modules.pop(name, None)
        if vars(torch).get("_dynamo") is package:  # importing set it on torch; torch loads the real one lazily
            delattr(torch, "_dynamo")
    import timm.models  # noqa: F401, F811


def _forget(*packages: str) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in packages]:
        del sys.modules[name]


import_timm()
