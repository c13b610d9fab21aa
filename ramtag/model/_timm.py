"""Import timm's Swin without paying for ``torch._dynamo``, timm's other models or all of torchvision.

timm imports torchvision, whose ``ops.roi_align`` imports a function of ``torch._dynamo.utils``,
and a few of timm's own functions are marked ``torch.compiler.disable``: both load all of
TorchDynamo (sympy included) at import time, on a 2-core machine 2.7 s of a 3.5 s ``import timm``,
more than PyTorch's own import, for a compiler ramtag never runs. So while timm (and with it
torchvision) is imported, ``torch._dynamo`` is a stand-in with just those two names, each doing the
real thing when first called: ``is_compile_supported`` asks the real TorchDynamo, and a function
marked ``disable`` is disabled by the real one the first time it runs (torchvision and timm use
them only under ``torch.compile``, which imports TorchDynamo anyway).

And the packages' ``__init__`` files import far more than Swin needs: ``timm.models`` every model
timm has (0.4 s), ``timm.data`` its datasets and with them torchvision's, ``torchvision`` all its
models, datasets and transforms (0.3 s), when timm's layers use ``torchvision.ops`` alone. So these
packages are created from their import specs without running their ``__init__`` (``_SKIPPED``),
with the few names Swin's modules take from the packages themselves, while
``timm.models.swin_transformer`` and what it imports (timm's layers, its builder, torchvision's ops)
are loaded the ordinary way.

Under ramtag's command line, timm is also imported without huggingface_hub (0.2 s), which timm
treats as optional: ramtag downloads its weights itself, never through timm, and nothing else in
the process uses timm. As a library, ramtag leaves timm's Hub support as it is.

Afterwards TorchDynamo's stand-in is gone (``import torch._dynamo`` works as ever), and the
skipped packages run their ``__init__`` in place the first time they are asked for a name they do
not hold yet, so ``import timm`` or ``import torchvision`` later gives the whole package, which
finds the modules loaded already.
Where a stand-in is not enough (a later Swin taking another name from a skipped ``__init__``, a
later torchvision wanting more of TorchDynamo at import), Swin is imported again with the
``__init__`` files run, and failing that the ordinary way; where torchvision, timm or TorchDynamo
is loaded already there is nothing to save and nothing is stood in for.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

_STAND_INS = ("torch._dynamo", "torch._dynamo.utils")
# The packages whose ``__init__`` is skipped while Swin is imported, each with the submodule holding
# the names that Swin's own imports take from the package itself.
_SKIPPED = {
    "timm": "timm.version",  # __version__, for timm.models._hub
    "timm.models": None,  # would import every model
    "timm.data": "timm.data.constants",  # IMAGENET_DEFAULT_MEAN and _STD; its datasets import torchvision's
    "torchvision": None,  # would import all of torchvision; timm's layers use torchvision.ops alone
    "torchvision.models": None,  # every torchvision model; timm's fx helpers use its feature_extraction
}


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
    """Import ``timm.models.swin_transformer`` (and so timm's layers and torchvision's ops), without
    TorchDynamo, timm's other models or the rest of torchvision if it can."""
    if {"timm", "torchvision", "torch._dynamo"} & sys.modules.keys():
        import timm.models.swin_transformer  # nothing to save
        return
    if not (_import_swin(skipped=_SKIPPED) or _import_swin(skipped={})):
        import timm.models.swin_transformer  # noqa: F401 - the ordinary way


def _import_swin(skipped: dict[str, str | None]) -> bool:
    """Whether Swin imported with TorchDynamo's stand-in and the ``__init__`` of ``skipped`` not run;
    if not, nothing of timm or torchvision is left imported."""
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
        for name, names_from in skipped.items():
            _unexecuted(name, names_from)  # stays: it runs its __init__ when asked for more
        import timm.models.swin_transformer  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - whatever a stand-in lacked: the caller tries with less
        _forget("timm", "torchvision")
        return False
    finally:
        for name, stand_in in stand_ins.items():
            if name in sys.modules and sys.modules[name] is stand_in:
                del sys.modules[name]
        if vars(torch).get("_dynamo") is package:  # importing set it on torch; torch loads the real one lazily
            delattr(torch, "_dynamo")


class _Unexecuted(types.ModuleType):
    """A package whose ``__init__`` has not run yet: it runs, in this same module object, when a name
    the package does not hold is first asked for (``timm.create_model``, ``torchvision.__version__``).
    So a later ``import timm`` or a torchvision module that kept a reference to its package finds
    the whole package, and submodules imported meanwhile stay its attributes."""

    def __getattr__(self, name: str) -> Any:
        with _RUNNING_LOCK:  # another thread asking waits until the __init__ has run
            if type(self) is _Unexecuted and self.__name__ not in _RUNNING:
                _RUNNING.add(self.__name__)  # the __init__ asking for its own names does not re-run it
                try:
                    self.__spec__.loader.exec_module(self)  # type: ignore[union-attr]
                    self.__class__ = types.ModuleType
                finally:
                    _RUNNING.discard(self.__name__)
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


_RUNNING: set[str] = set()
_RUNNING_LOCK = threading.RLock()


def _unexecuted(name: str, names_from: str | None) -> types.ModuleType:
    """The package ``name`` in ``sys.modules`` as its ``__init__`` would start: its submodules
    import, nothing else has run, and the names of ``names_from`` (one of its submodules) are
    there, as ``__init__`` puts them."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.loader is None:
        raise ImportError(f"{name} is not an installed package")
    package = importlib.util.module_from_spec(spec)
    package.__class__ = _Unexecuted
    sys.modules[name] = package  # for the submodule below
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)  # as an import of it would
    if names_from is not None:
        names = vars(importlib.import_module(names_from))
        vars(package).update({key: value for key, value in names.items()
                              if not key.startswith("_") or key == "__version__"})
    return package


def _forget(*packages: str) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] in packages]:
        del sys.modules[name]


import_timm()
