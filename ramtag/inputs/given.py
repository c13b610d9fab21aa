"""What ``Tagger.tag`` takes as an image: a path (``~`` expanded), an image URL, a PIL image, or a
numpy array of pixels (``HxW`` or ``HxWxC``, uint8, as ``PIL.Image.fromarray`` reads it). Anything
else is one ``UsageError`` saying what is taken, before any image is tagged."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .refs import Decoded, ImageRef

TAKEN = "a path, an image URL, a PIL image or a uint8 numpy array (HxW or HxWx3)"


def is_one_image(images: Any) -> bool:
    """``images`` is one image, not several (an array of one image's pixels included)."""
    if isinstance(images, (str, os.PathLike)) or _is_pil(images):
        return True
    return _is_array(images) and images.ndim in (2, 3)


def given_images(images: Any) -> list[Any]:
    """Several images as a list; anything that is neither an image nor a collection of them: said."""
    if isinstance(images, (bytes, bytearray)):
        raise UsageError("image bytes are not taken: give a path, or PIL.Image.open(io.BytesIO(data))")
    try:
        return list(images)
    except TypeError:
        raise UsageError(f"{type(images).__name__!r} is not an image ramtag reads; give {TAKEN}, or a list of them") from None


def image_ref(item: Any, number: int) -> ImageRef:
    """The ``ImageRef`` of the ``number``-th image given."""
    if _is_pil(item):
        return ImageRef(Path(f"<image {number}>"), f"<image {number}>", Decoded(f"image {number}", item))
    if _is_array(item):
        return ImageRef(Path(f"<image {number}>"), f"<image {number}>", Decoded(f"image {number}", _from_array(item)))
    if isinstance(item, str) and "://" in item:
        from .fs import is_url

        if is_url(item):
            from .remote import remote_image

            return remote_image(item, item)
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        return ImageRef(Path(text).expanduser(), text)
    kind = type(item).__name__
    hint = " (a tensor: tagger.scores(batch) takes preprocessed ones, or convert it to a PIL image)" \
        if kind == "Tensor" else ""
    raise UsageError(f"image {number}: {kind!r} is not an image ramtag reads; give {TAKEN}{hint}")


def _is_array(item: Any) -> bool:
    """A numpy array (a memmap or masked one too); numpy is imported by whoever made it."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(item, numpy.ndarray)


def _is_pil(item: Any) -> bool:
    from PIL import Image

    return isinstance(item, Image.Image)


def _from_array(array: Any) -> Any:
    from PIL import Image

    if array.dtype.name != "uint8" or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise UsageError(f"an array of {array.dtype.name} {tuple(array.shape)}: give uint8 pixels, HxW or HxWx3 "
                         "(HxWx4 with alpha), as PIL.Image.fromarray reads them")
    return Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)
