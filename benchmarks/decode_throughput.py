"""How fast images can be decoded and preprocessed, by each route: is decoding the bottleneck?

On a GPU the model tags hundreds of images per second, and a CPU core decodes and resizes a
2-megapixel JPEG some 30-50 times per second, so the decoding workers, not the GPU, often set the
pace. This script times, per image and on one core each:

- ``pil``: ramtag's default path (full decode, EXIF orientation, antialiased bilinear resize);
- ``pil-draft``: the same with Pillow's draft mode, which has libjpeg decode at 1/2, 1/4 or 1/8
  scale while staying at least as large as the model's input (``ramtag run --draft-decode``);
- ``torchvision-cpu`` / ``torchvision-cuda``: ``torchvision.io.decode_jpeg`` on the CPU, and on the
  GPU (nvJPEG) followed by an antialiased resize there, one image per call;
  ``torchvision-cuda-batch32``: the same with 32 files per call. The GPU figures are images/s of
  the whole device, not per core.

    python benchmarks/decode_throughput.py --synthetic 64 --size 1600x1200
    python benchmarks/decode_throughput.py --images ./photos --limit 200 --json

The per-core figures times the number of decoding workers give the decode ceiling to compare with
``ramtag bench``'s images/s.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ramtag.bench import write_synthetic_images
from ramtag.inputs import decode_bytes
from ramtag.model.config import named_config
from ramtag.model.transform import preprocess


def time_route(datas: list[bytes], route: Callable[[bytes], object], repeats: int) -> float:
    """Median over ``repeats`` passes of the seconds per image."""
    route(datas[0])  # first-use costs (library loading, CUDA context) are not per-image costs
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for data in datas:
            route(data)
        passes.append((time.perf_counter() - start) / len(datas))
    return statistics.median(passes)


def routes(size: int, device: str | None) -> dict[str, Callable[[bytes], object]]:
    config = named_config("ram_plus_swin_large_14m")
    config = config if config.image_size == size else _resized(config, size)

    def pil(data: bytes) -> torch.Tensor:
        return preprocess(decode_bytes(data, name="x.jpg"), config)

    def pil_draft(data: bytes) -> torch.Tensor:
        return preprocess(decode_bytes(data, name="x.jpg", draft_size=size), config)

    found = {"pil": pil, "pil-draft": pil_draft}
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as tvf
    except ImportError:
        return found
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)

    def torchvision_cpu(data: bytes) -> torch.Tensor:
        pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        resized = tvf.resize(pixels, [size, size], antialias=True).float() / 255
        return (resized - mean) / std

    found["torchvision-cpu"] = torchvision_cpu
    if device is not None and device.startswith("cuda") and torch.cuda.is_available():
        gpu_mean, gpu_std = mean.to(device), std.to(device)

        def torchvision_cuda(data: bytes) -> torch.Tensor:
            pixels = decode_jpeg(
                torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, device=device
            )
            resized = tvf.resize(pixels, [size, size], antialias=True).float() / 255
            out = (resized - gpu_mean) / gpu_std
            torch.cuda.synchronize()
            return out

        found["torchvision-cuda"] = torchvision_cuda
    return found


def time_cuda_batched(datas: list[bytes], size: int, device: str, batch: int, repeats: int) -> float | None:
    """Seconds per image of nvJPEG decoding ``batch`` files per call, resized and normalised there."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as tvf
    except ImportError:
        return None
    config = named_config("ram_plus_swin_large_14m")
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]

    def one_pass() -> None:
        for start in range(0, len(encoded), batch):
            decoded = decode_jpeg(encoded[start : start + batch], mode=ImageReadMode.RGB, device=device)
            resized = torch.stack([tvf.resize(image, [size, size], antialias=True) for image in decoded])
            (resized.float() / 255 - mean) / std
        torch.cuda.synchronize()

    one_pass()  # first use: nvJPEG handles, kernels
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        one_pass()
        passes.append((time.perf_counter() - started) / len(datas))
    return statistics.median(passes)


def _resized(config, size: int):  # noqa: ANN001, ANN202 - a ModelConfig with another input size
    from dataclasses import replace

    return replace(config, image_size=size)


def score_free_pixel_change(datas: list[bytes], size: int) -> dict[str, float]:
    """How much draft mode changes the model's input (max and mean |difference|, normalised units)."""
    config = named_config("ram_plus_swin_large_14m")
    config = config if config.image_size == size else _resized(config, size)
    worst, means = 0.0, []
    for data in datas:
        exact = preprocess(decode_bytes(data, name="x.jpg"), config)
        draft = preprocess(decode_bytes(data, name="x.jpg", draft_size=size), config)
        diff = (exact - draft).abs()
        worst = max(worst, float(diff.max()))
        means.append(float(diff.mean()))
    return {"max_abs": round(worst, 4), "mean_abs": round(statistics.mean(means), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="JPEGs to time (default: generated photos)")
    parser.add_argument("--synthetic", type=int, default=32, help="generated photos, without --images")
    parser.add_argument("--size", default="1600x1200", help="size of the generated photos, WxH")
    parser.add_argument("--limit", type=int, default=200, help="at most this many files from --images")
    parser.add_argument("--input-size", type=int, default=384, help="the model's input side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one decoding worker's share of the machine

    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
            paths = paths[: args.limit]
        else:
            width, height = (int(v) for v in args.size.lower().split("x"))
            paths = write_synthetic_images(Path(tmp), args.synthetic, size=(width, height))
        if not paths:
            sys.exit(f"{args.images}: no JPEG files")
        datas = [p.read_bytes() for p in paths]

    sizes = [Image.open(io.BytesIO(data)).size for data in datas]
    results = {
        name: round(1000 * time_route(datas, route, args.repeats), 2)
        for name, route in routes(args.input_size, args.device).items()
    }
    if args.device is not None and args.device.startswith("cuda") and torch.cuda.is_available():
        batched = time_cuda_batched(datas, args.input_size, args.device, 32, args.repeats)
        if batched is not None:
            results["torchvision-cuda-batch32"] = round(1000 * batched, 2)
    report = {
        "images": len(datas),
        "median_megapixels": round(float(np.median([w * h for w, h in sizes])) / 1e6, 2),
        "ms_per_image": results,
        "images_per_s_per_core": {k: round(1000 / v, 1) for k, v in results.items()},
        "draft_pixel_change": score_free_pixel_change(datas[:16], args.input_size),
        "torch": torch.__version__,
        "device": args.device,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['images']} JPEGs, median {report['median_megapixels']} MP, input {args.input_size} px")
    for name, ms in results.items():
        unit = "images/s on the device" if "cuda" in name else "images/s per core"
        print(f"  {name:<18} {ms:8.2f} ms/image  {1000 / ms:7.1f} {unit}")
    change = report["draft_pixel_change"]
    print(f"draft mode changes the model input by at most {change['max_abs']} (mean {change['mean_abs']})")


if __name__ == "__main__":
    main()
