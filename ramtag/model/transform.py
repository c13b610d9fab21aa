"""Image preprocessing, identical to the official ``get_transform``.

Pillow's RGB conversion, a bilinear resize to S x S with Pillow's antialiasing (what torchvision's
``Resize`` does on a PIL image), scaling to [0, 1] and ImageNet normalisation. EXIF orientation is
applied before this, when the image is decoded (``ramtag.inputs``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .config import ModelConfig


def preprocess(image: Image.Image, config: ModelConfig) -> torch.Tensor:
    """``(3, S, S)`` float32 tensor for one image."""
    size = config.image_size
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
