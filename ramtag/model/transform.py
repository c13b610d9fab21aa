"""Image preprocessing, identical to the official ``get_transform``, and its pieces for the GPU.

Pillow's RGB conversion, a bilinear resize to S x S with Pillow's antialiasing (what torchvision's
``Resize`` does on a PIL image), scaling to [0, 1] and ImageNet normalisation. EXIF orientation is
applied before this, when the image is decoded (``ramtag.inputs``).

Normalisation maps each of the 256 levels of each channel through a table computed with the
official arithmetic (``x / 255``, minus the mean, over the deviation, in float32), so it gives the
same bits as that arithmetic on every pixel, at a quarter of its cost.

``resize_pixels`` is torch's antialiased bilinear filter, the same filter as Pillow's, rounded to
levels as Pillow's output is: within one level of Pillow's pixels (on a fraction of a percent of
them for photos much larger than the input, on up to a fifth for sizes close to it). JPEGs decoded
on the GPU are resized with it (``devicejpeg``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import ModelConfig


def preprocess(image: Image.Image, config: ModelConfig) -> torch.Tensor:
    """``(3, S, S)`` float32 tensor for one image."""
    size = config.image_size
    return normalise(_pixels(as_rgb(image).resize((size, size), Image.Resampling.BILINEAR)), config)


_SIXTEEN_BITS = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def as_rgb(image: Image.Image) -> Image.Image:
    """Pillow's RGB conversion, except for 16-bit greyscale (film scans, PNGs and TIFFs of 16 bits),
    which it clips at level 255, turning most of the picture white: those are scaled to 8 bits
    (``round(v / 257)``) first. So are 32-bit integer images whose values go past 255, which is how
    some files of 16-bit levels open."""
    if image.mode == "RGB":
        return image  # converting would only copy it
    if image.mode in _SIXTEEN_BITS or image.mode == "I":
        levels = np.asarray(image, dtype=np.int64)
        if image.mode in _SIXTEEN_BITS or levels.max(initial=0) > 255:
            eight = np.clip((levels + 128) // 257, 0, 255).astype(np.uint8)
            return Image.fromarray(eight, "L").convert("RGB")
    return image.convert("RGB")


def resize_pixels(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8`` ``(3, H, W)`` or ``(N, 3, H, W)`` pixels resized to ``size`` x ``size``, as
    Pillow's antialiased bilinear filter does (within one level). On the CPU torch resizes
    ``uint8`` directly; elsewhere in float32, rounded back to levels as Pillow's output is."""
    single = pixels.dim() == 3
    batch = pixels.unsqueeze(0) if single else pixels
    if batch.shape[-2:] != (size, size):
        batch = _resize_uint8(batch, size) if batch.device.type == "cpu" else _resize_float(batch, size)
    return batch[0] if single else batch


def _resize_uint8(batch: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _resize_float(batch: torch.Tensor, size: int) -> torch.Tensor:
    """The filter in float32, rounded back to levels (devices without ``uint8`` resizing)."""
    resized = F.interpolate(batch.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def normalise(pixels: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """``uint8`` ``(3, H, W)`` or ``(N, 3, H, W)`` levels → the model's float32 input (a look-up)."""
    table = _levels(tuple(config.mean), tuple(config.std), pixels.device)
    batch = pixels.unsqueeze(0) if pixels.dim() == 3 else pixels
    images, channels, height, width = batch.shape
    values = table.gather(1, batch.transpose(0, 1).reshape(channels, -1).long())
    out = values.view(channels, images, height, width).transpose(0, 1).contiguous()
    return out[0] if pixels.dim() == 3 else out


@functools.cache
def _levels(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """``(3, 256)``: what the official arithmetic makes of each level of each channel."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    table = (levels[None, :] - np.asarray(mean, dtype=np.float32)[:, None]) / np.asarray(std, dtype=np.float32)[:, None]
    return torch.from_numpy(table.astype(np.float32)).to(device)


def _pixels(rgb: Image.Image) -> torch.Tensor:
    """An RGB image's levels as ``uint8`` ``(3, H, W)``, channels last in memory (a writable copy:
    torch warns about the read-only array Pillow hands numpy)."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
