"""JPEGs decoded where the model runs: a batch at a time with nvJPEG on a GPU (``--preprocess gpu``).

The decoding workers hand back plain JPEGs still encoded (``inputs.jpeg``); here one ``decode_jpeg``
call decodes all of a batch's on the device (TorchCodec's where it is installed, ``pip install
ramtag[gpu]``; else torchvision's, which TorchCodec replaces and torchvision 0.29 deprecates), each is turned upright
as its EXIF orientation says (flips and transposes of the decoded pixels, as Pillow's
``exif_transpose`` does), resized with torch's antialiased bilinear filter and normalised there
(``model.transform``). A file the batched call cannot decode is tried alone, and what fails alone
is decoded by Pillow on the host, which either succeeds or says what is wrong with the file.

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
    positions (in ``files``) of those that did not: the caller decodes them another way."""
    decode, turns_by_exif = jpeg_decoder()
    datas = [file.data for file in files]
    try:
        decoded: list[torch.Tensor | None] = list(decode(datas, device))
    except RuntimeError:  # one bad file fails the batched call: find it by decoding one at a time
        decoded = [_decode_one(decode, data, device) for data in datas]
    size = config.image_size
    resized, failed = [], []
    for position, (file, pixels) in enumerate(zip(files, decoded)):
        if pixels is None or pixels.dim() != 3 or pixels.shape[0] != 3:
            failed.append(position)
            continue
        turned = file.in_exif and turns_by_exif  # the decoder applied the orientation already
        resized.append(resize_pixels(pixels if turned else upright(pixels, file.orientation), size))
    if not resized:
        return None, failed
    return normalise(torch.stack(resized), config), failed


Decoder = Callable[[list[bytes], torch.device], list[torch.Tensor]]


@functools.cache
def jpeg_decoder() -> tuple[Decoder, bool]:
    """Batched JPEG decoding to RGB ``uint8`` ``(3, H, W)``: TorchCodec's, else torchvision's; and
    whether it applies the EXIF orientation itself (TorchCodec does, as Pillow would; torchvision
    leaves it, and neither reads the XMP orientation Pillow falls back to)."""
    try:
        from torchcodec.decoders import decode_jpeg as torchcodec_decode
    except (ImportError, OSError, RuntimeError):  # not installed, or built for another torch
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as torchvision_decode

        def decode(datas: list[bytes], device: torch.device) -> list[torch.Tensor]:
            encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
            with warnings.catch_warnings():  # its deprecation in favour of TorchCodec: said in the docs
                warnings.simplefilter("ignore", DeprecationWarning)
                return torchvision_decode(encoded, mode=ImageReadMode.RGB, device=device)

        return decode, False

    def decode_with_torchcodec(datas: list[bytes], device: torch.device) -> list[torch.Tensor]:
        return torchcodec_decode(datas, mode="RGB", device=device)

    return decode_with_torchcodec, True


def _decode_one(decode: Decoder, data: bytes, device: torch.device) -> torch.Tensor | None:
    try:
        return decode([data], device)[0]
    except RuntimeError:
        return None
