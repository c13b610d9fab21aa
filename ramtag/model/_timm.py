"""Import timm's Swin without paying for ``torch._dynamo`` or timm's other hundred models.

timm imports torchvision, whose ``ops.roi_align`` imports a function of ``torch._dynamo.utils``,
and a few of timm's own functions are marked ``torch.compiler.disable``: both load all of
TorchDynamo (sympy included) at import time, on a 2-core machine 2.7 s of a 3.5 s ``import timm``,
more than PyTorch's own import, for a compiler ramtag never runs. So while timm (and with it
torchvision) is imported, ``torch._dynamo`` is a stand-in with just those two names, each doing the
real thing when first called: ``is_compile_supported`` asks the real TorchDynamo, and a function
marked ``disable`` is disabled by the real one the first time it runs (torchvision and timm use
them only under ``torch.compile``, which imports TorchDynamo anyway).

And ``timm/__init__.py`` imports ``timm.models``, whose ``__init__`` imports every model timm has
(0.4 s more). ramtag needs one, so the two packages are created from their import specs without
running their ``__init__`` while ``timm.models.swin_transformer`` and what it imports (timm's
layers, data constants, builder) are loaded the ordinary way.

Under ramtag's command line, timm is also imported without huggingface_hub (0.2 s), which timm
treats as optional: ramtag downloads its weights itself, never through timm, and nothing else in
the process uses timm. As a library, ramtag leaves timm's Hub support as it is.

Afterwards the stand-ins are gone: ``import torch._dynamo`` works as ever, and ``import timm``
runs timm's own ``__init__``, which finds the modules loaded already. Where torchvision, timm or
TorchDynamo is loaded already, or a stand-in is not enough (a later torchvision wanting more of
TorchDynamo at import, a later Swin importing from timm's top level), timm is imported the
ordinary way.
"""

from __future__ import annotations

import functools
import importlib.util
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
    """Import ``timm.models.swin_transformer`` (and so timm's layers and torchvision), without
    TorchDynamo or timm's other models if it can."""
    if {"timm", "torchvision", "torch._dynamo"} & sys.modules.keys():
        import timm.models.swin_transformer  # noqa: F401 - nothing to save
        return
    import torch

    package = types.ModuleType("torch._dynamo")
    package.__path__ = []  # a package with no submodules but ``utils``
    package.disable = disable  # type: ignore[attr-defined]
    utils = types.ModuleType("torch._dynamo.utils")
    utils.is_compile_supported = is_compile_supported  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    stand_ins: dict[str, types.ModuleType | None] = dict(zip(_STAND_INS, (package, utils)))
    if "ramtag.cli.app" in sys.modules and "huggingface_hub" not in sys.modules:
        stand_ins["huggingface_hub"] = None  # ImportError: timm goes without its Hub downloads
    sys.modules.update(stand_ins)
    try:
        for name in ("timm", "timm.models"):
            stand_ins[name] = sys.modules[name] = _unexecuted(name)
        from timm.version import __version__

        sys.modules["timm"].__version__ = __version__  # the one name timm's __init__ sets that its models use
        import timm.models.swin_transformer  # noqa: F401
        return
    except Exception:  # noqa: BLE001 - whatever a stand-in lacked: the ordinary import below
        _forget("timm", "torchvision")
    finally:
        for name, stand_in in stand_ins.items():
            if name in sys.modules and sys.modules[name] is stand_in:
                del sys.modules[name]
        if vars(torch).get("_dynamo") is package:  # importing set it on torch; torch loads the real one lazily
            delattr(torch, "_dynamo")
    import timm.models.swin_transformer  # noqa: F401, F811


def _unexecuted(name: str) -> types.ModuleType:
    """The package ``name`` as its ``__init__`` would start: submodules import, nothing else is run."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an installed package")
    return importlib.util.module_from_spec(spec)


def _forget(*packages: str) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in packages]:
        del sys.modules[name]


import_timm()
