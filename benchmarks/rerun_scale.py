"""How a re-run on an unchanged collection scales: discovery plus the skip decision, per file.

For each size N it makes N small image files (100 folders), writes the output a previous run would
have left (one row per file, with each file's size and time, in the real schema and metadata of the
tiny fixture model), then times the real command line, ``python -m ramtag run photos --out
tags.parquet``, which has nothing to tag. It reports wall time, the marginal rate between sizes
(files/s: what the re-run costs per file once the fixed start-up is taken out) and the peak RSS of
the run. Three runs per size; medians.

    python benchmarks/rerun_scale.py --sizes 10000 30000 100000 [--keep /tmp/rerun-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The project's tiny official-code fixture, beside the checkout; RAMTAG_FIXTURE names another folder.
FIXTURE = Path(os.environ.get("RAMTAG_FIXTURE") or REPO.parent / "shared" / "fixtures" / "official_ramplus_tiny")
MODEL = ["--checkpoint", str(FIXTURE / "checkpoint.pth"), "--tag-list", str(FIXTURE / "tags.txt"),
         "--thresholds", str(FIXTURE / "thresholds.txt")]
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # never decoded: nothing is tagged


def make_collection(root: Path, count: int) -> Path:
    photos = root / "photos"
    for number in range(count):
        folder = photos / f"{number % 100:03d}"
        if number < 100:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{number:07d}.jpg").write_bytes(JPEG + number.to_bytes(4, "big"))
    return photos


def previous_output(photos: Path, out: Path) -> None:
    """The output of a run that tagged every file (no tags: what matters is one row per key)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ramtag.engine.job import ResultOptions
    from ramtag.inputs import discover
    from ramtag.inputs.identity import stat_stamp
    from ramtag.inputs.roots import Root
    from ramtag.outputs.schema import schema_for, to_record_batch
    from ramtag.pipeline import ImageRecord
    from ramtag.loading import load_tagger
    from ramtag.tagger import TagResult

    tagger = load_tagger(MODEL[1], tag_list=MODEL[3], thresholds=MODEL[5], device="cpu")
    schema = schema_for(tagger, "en", False, ResultOptions(), roots=[Root(os.path.realpath(photos), "")])
    result = TagResult(["benchmark"], [0.9], None, None)
    records = [ImageRecord(ref.key, result, 1, 1, None, ref.path, stat_stamp(ref.path)) for ref in discover([photos])]
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for start in range(0, len(records), 50_000):
            writer.write_table(pa.Table.from_batches([to_record_batch(records[start:start + 50_000], schema)]))


def rerun(photos: Path, out: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, last line) of one real re-run."""
    command = [sys.executable, "-m", "ramtag", "run", str(photos), "--out", str(out), *MODEL]
    script = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
              "repr(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAMTAG_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, env=env, check=True)
    seconds, rss, last = done.stdout.split(" ", 2)
    return float(seconds), int(rss) / 1024, last.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="make the collections here and leave them")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="ramtag-rerun-"))
    results = []
    for size in args.sizes:
        root = base / f"n{size}"
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        photos = make_collection(root, size) if not (root / "photos").exists() else root / "photos"
        out = root / "tags.parquet"
        previous_output(photos, out)
        made = time.perf_counter() - started
        runs = [rerun(photos, out) for _ in range(args.runs)]
        seconds = statistics.median(run[0] for run in runs)
        rss = max(run[1] for run in runs)
        results.append({"files": size, "seconds": round(seconds, 2), "peak_rss_mib": round(rss), "setup_s": round(made, 1),
                        "said": runs[-1][2]})
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    for small, large in zip(results, results[1:]):
        rate = (large["files"] - small["files"]) / max(large["seconds"] - small["seconds"], 1e-9)
        grow = (large["peak_rss_mib"] - small["peak_rss_mib"]) / (large["files"] - small["files"]) * 1e6
        print(f"{small['files']} -> {large['files']} files: {rate:,.0f} files/s marginal, "
              f"RSS +{grow:.0f} MiB per million rows")
    print(f"machine: {os.cpu_count()} CPUs; maxrss of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
