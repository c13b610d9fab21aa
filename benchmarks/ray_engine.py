"""`ramtag run` on tar shards: the local engine against the Ray engine on this one machine.

Writes N JPEGs (640x480, distinct random content) into webdataset shards of 32, then tags them
with the official tiny RAM++ fixture through the real command line, at two sizes so that the
fixed start-up cost (Ray, actor processes, model loading) can be told apart from the throughput:

    python benchmarks/ray_engine.py --sizes 64 320 --repeats 3 --engines local ray ray1

Per engine and size it prints the median wall time of the whole command; "steady" is the extra
images divided by the extra seconds between the two sizes, which leaves start-up out. The tiny
model makes decoding and plumbing, not the network, the cost: the figures say what the engines add,
not how fast full-size RAM++ runs.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The project's tiny official-code fixture, beside the checkout; RAMTAG_FIXTURE names another folder.
FIXTURE = Path(os.environ.get("RAMTAG_FIXTURE") or REPO.parent / "shared" / "fixtures" / "official_ramplus_tiny")
PER_SHARD = 32


def make_shards(folder: Path, count: int, *, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for shard in range(-(-count // PER_SHARD)):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as archive:
            for index in range(shard * PER_SHARD, min(count, (shard + 1) * PER_SHARD)):
                base = rng.integers(0, 256, size=(1, 1, 3))
                noise = rng.integers(-40, 40, size=(480, 640, 3))
                buffer = io.BytesIO()
                Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
                info = tarfile.TarInfo(f"{shard:05d}{index:04d}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                archive.addfile(info, buffer)


def run_once(shards: Path, out: Path, extra: list[str]) -> float:
    command = [
        sys.executable, "-m", "ramtag", "run", str(shards), "--out", str(out), "-q",
        "--checkpoint", str(FIXTURE / "checkpoint.pth"), "--tag-list", str(FIXTURE / "tags.txt"),
        "--thresholds", str(FIXTURE / "thresholds.txt"), *extra,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


ENGINES = {  # name: (what it is, its options)
    "local": ("local engine, 1 decoding worker", ["--workers", "1", "--device", "cpu"]),
    "ray": ("Ray engine, 2 actors x 1 CPU", ["--engine", "ray"]),
    "ray1": ("Ray engine, 1 actor x 1 CPU", ["--engine", "ray", "--concurrency", "1"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[64, 320])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=["local", "ray"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            make_shards(Path(tmp) / f"s{size}", size)
        for name in args.engines:
            engine, extra = ENGINES[name]
            medians = []
            for size in args.sizes:
                times = []
                for repeat in range(args.repeats):
                    out = Path(tmp) / f"out-{len(results)}-{size}-{repeat}{'' if 'ray' in name else '.parquet'}"
                    times.append(run_once(Path(tmp) / f"s{size}", out, extra))
                medians.append(statistics.median(times))
                print(f"{engine}: {size} images in {medians[-1]:.1f} s (median of {args.repeats}: "
                      f"{', '.join(f'{t:.1f}' for t in times)}) = {size / medians[-1]:.1f} images/s", flush=True)
            (small, large), (t_small, t_large) = args.sizes, medians
            steady = (large - small) / (t_large - t_small)
            print(f"{engine}: steady {steady:.1f} images/s, start-up {t_small - small / steady:.1f} s", flush=True)
            results.append({"engine": engine, "sizes": args.sizes, "median_s": medians, "steady_images_per_s": steady})
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
