"""JPEGs decoded where the model runs: a batch at a time with nvJPEG on a GPU (``--preprocess gpu``).

The decoding workers hand back plain JPEGs still encoded (``inputs.jpeg``); here one ``decode_jpeg``
call decodes a batch's on the device (TorchCodec's where it is installed, ``pip install
ramtag[gpu]``; else torchvision's, which TorchCodec replaces and torchvision 0.29 deprecates). Each
image is turned upright as Pillow reads its orientation (flips and transposes of the decoded
pixels, as ``exif_transpose`` does; the decoders see no EXIF orientation), resized with torch's
antialiased bilinear filter and normalised there (``model.transform``). A file the batched call
cannot decode is tried alone, and what fails alone is decoded by Pillow on the host, which either
succeeds or says what is wrong with the file.

On a CPU device the same calls run with libjpeg-turbo, which is how the tests cover this path on
machines without a GPU.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch

from .inputs.jpeg import EncodedJpeg
from .model.config import ModelConfig
from .model.transform import normalise, resize_pixels

# Pillow's exif_transpose, as operations on (3, H, W) pixels: orientation → upright.
_UPRIGHT: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    2: lambda pixels: pixels.flip(-1),  # mirrored left to right
    3: lambda pixels: pixels.flip(-2, -1),  # upside down
    4: lambda pixels: pixels.flip(-2),  # mirrored top to bottom
    5: lambda pixels: pixels.transpose(-2, -1),  # mirrored along the main diagonal
    6: lambda pixels: pixels.rot90(-1, (-2, -1)),  # a quarter turn clockwise
    7: lambda pixels: pixels.transpose(-2, -1).flip(-2, -1),  # mirrored along the other diagonal
    8: lambda pixels: pixels.rot90(1, (-2, -1)),  # a quarter turn anticlockwise
}


def upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """``(3, H, W)`` pixels as they should be seen, given the file's EXIF orientation (1 to 8)."""
    turn = _UPRIGHT.get(orientation)
    return pixels if turn is None else turn(pixels)


def decode_jpegs(
    files: list[EncodedJpeg], device: torch.device, config: ModelConfig
) -> tuple[torch.Tensor | None, list[int]]:
    """The model's input ``(N, 3, S, S)`` on ``device`` for the files that decoded there, and the
    positions (in ``files``) of those that did not: the caller decodes them another way.

    Files are decoded a group at a time, each group at most ``PIXEL_BUDGET`` decoded pixels, and
    each decoded image is let go once resized, so a batch of large photos needs little memory there.
    """
    decode = jpeg_decoder()
    size = config.image_size
    resized: list[torch.Tensor] = []
    failed: list[int] = []
    for group in _groups(files):
        datas = [files[position].data for position in group]
        try:
            decoded: list[torch.Tensor | None] = list(decode(datas, device))
            if len(decoded) != len(datas):
                raise RuntimeError(f"{len(decoded)} images decoded from {len(datas)} files")
        except Exception:  # noqa: BLE001 - one bad file (or too little memory) fails the call: one at a time
            decoded = [_decode_one(decode, data, device) for data in datas]
        for index, position in enumerate(group):
            pixels, decoded[index] = decoded[index], None
            try:
                if pixels is None or pixels.dim() != 3 or pixels.shape[0] != 3:
                    raise ValueError("not an RGB image")
                resized.append(resize_pixels(upright(pixels, files[position].orientation), size))
            except Exception:  # noqa: BLE001 - decoded by Pillow on the host instead
                failed.append(position)
            del pixels
    if not resized:
        return None, failed
    try:
        return normalise(torch.stack(resized), config), failed
    except Exception:  # noqa: BLE001 - too little memory for the batch there: all of it on the host
        return None, list(range(len(files)))


PIXEL_BUDGET = 512 * 2**20  # decoded pixels per decoding call: 1.5 GB of RGB (about 40 12-megapixel photos)


def _groups(files: list[EncodedJpeg]) -> list[list[int]]:
    """Positions of ``files`` in runs of at most ``PIXEL_BUDGET`` pixels (a larger file alone)."""
    groups: list[list[int]] = []
    pixels = 0
    for position, file in enumerate(files):
        if not groups or pixels + file.width * file.height > PIXEL_BUDGET:
            groups.append([])
            pixels = 0
        groups[-1].append(position)
        pixels += file.width * file.height
    return groups


Decoder = Callable[[list["bytes | torch.Tensor"], torch.device], list[torch.Tensor]]


@functools.cache
def jpeg_decoder() -> Decoder:
    """Batched JPEG decoding to RGB ``uint8`` ``(3, H, W)``: TorchCodec's, else torchvision's.
    Neither turns the image: ``inputs.jpeg`` hid the EXIF orientation from them."""
    try:
        from torchcodec.decoders import decode_jpeg as torchcodec_decode
    except (ImportError, OSError, RuntimeError):  # not installed, or built for another torch
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as torchvision_decode

        def decode(datas: list[bytes | torch.Tensor], device: torch.device) -> list[torch.Tensor]:
            encoded = [
                data if isinstance(data, torch.Tensor) else torch.frombuffer(bytearray(data), dtype=torch.uint8)
                for data in datas
            ]
            with warnings.catch_warnings():  # its deprecation in favour of TorchCodec: said in the docs
                warnings.simplefilter("ignore", DeprecationWarning)
                return torchvision_decode(encoded, mode=ImageReadMode.RGB, device=device)

        return decode

    def decode_with_torchcodec(datas: list[bytes | torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        return torchcodec_decode(datas, mode="RGB", device=device)

    return decode_with_torchcodec


def _decode_one(decode: Decoder, data: bytes | torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return decode([data], device)[0]
    except Exception:  # noqa: BLE001 - the caller decodes it with Pillow, which says what is wrong
        return None
