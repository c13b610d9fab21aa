"""Does `ramtag run` stay flat on a large collection? Throughput and peak memory at two sizes.

Generates N small JPEGs (distinct random content), tags them with the official tiny RAM++ fixture
through the real command line, and samples the resident memory of the whole process tree (main
process and DataLoader workers) while it runs. Run it from the repository root:

    python benchmarks/run_scale.py --sizes 1000 20000

It prints one line per size and, with --json, a JSON summary. Numbers depend on the machine; the
claim to check is that images/s and peak RSS at the large size are about those at the small one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import MemorySampler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The project's tiny official-code fixture, beside the checkout; RAMTAG_FIXTURE names another folder.
FIXTURE = Path(os.environ.get("RAMTAG_FIXTURE") or REPO.parent / "shared" / "fixtures" / "official_ramplus_tiny")


def make_images(folder: Path, count: int, *, seed: int = 0) -> None:
    """``count`` JPEGs of 64-160 px in nested folders of 1,000, each different."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        sub = folder / f"{index // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        width, height = (int(v) for v in rng.integers(64, 160, size=2))
        base = rng.integers(0, 256, size=(1, 1, 3))
        noise = rng.integers(-40, 40, size=(height, width, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(sub / f"img_{index:06d}.jpg", quality=85)


def run_once(folder: Path, out: Path, extra: list[str]) -> dict:
    command = [
        sys.executable, "-m", "ramtag", "run", str(folder), "--out", str(out),
        "--checkpoint", str(FIXTURE / "checkpoint.pth"),
        "--tag-list", str(FIXTURE / "tags.txt"),
        "--thresholds", str(FIXTURE / "thresholds.txt"),
        "--device", "cpu", *extra,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    with MemorySampler(process) as memory:
        _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"ramtag run failed ({process.returncode}):\n{stderr}")
    # "... in 12.3 s (2.1 s to start, then 5.2 images/s)": the steady rate, start-up apart
    match = re.search(r"then ([\d.]+) images/s\)", stderr) or re.search(r"\(([\d.]+) images/s\)", stderr)
    if match is None:
        raise SystemExit(f"no images/s in ramtag's summary:\n{stderr}")
    return {
        "images_per_s": float(match.group(1)),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": memory.peak_mb,
        "late_median_rss_mb": memory.late_median_mb(),
        "summary": stderr.strip().splitlines()[-1] if stderr.strip() else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = ["--batch-size", str(args.batch_size)]
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    results = {}
    with tempfile.TemporaryDirectory(prefix="ramtag-scale-") as tmp:
        os.environ.setdefault("RAMTAG_CACHE", str(Path(tmp) / "cache"))
        for size in args.sizes:
            folder = Path(tmp) / f"images_{size}"
            make_images(folder, size)
            result = run_once(folder, Path(tmp) / f"tags_{size}.parquet", extra)
            import pyarrow.parquet as pq

            rows = pq.read_metadata(Path(tmp) / f"tags_{size}.parquet").num_rows
            result["rows"] = rows
            results[size] = result
            print(
                f"{size:>7} images: {result['images_per_s']} images/s, peak memory (PSS) "
                f"{result['peak_rss_mb']} MB (late median {result['late_median_rss_mb']} MB), "
                f"{rows} rows, wall {result['wall_s']} s",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
