"""ramtag against the official RAM++ code, side by side on the same machine, weights and images.

The official code is not part of ramtag: point this script at a checkout of
github.com/xinyu1205/recognize-anything (and, if its dependencies live elsewhere, the Python that
has them, e.g. transformers 4.36 and timm 0.4.12):

    python benchmarks/compare_official.py --official-repo ~/recognize-anything \\
        --official-python ~/ram-env/bin/python --random-weights --synthetic 12 --repeats 3

What it measures, per image with start-up excluded:
- official: the single-image path of ``inference_ram_plus.py`` (open, ``get_transform``,
  ``generate_tag`` at batch 1), with the visual encoder timed apart from the tagging head;
- ramtag: ``ramtag bench`` (the ``run`` pipeline with its DataLoader; start-up and one warm-up
  batch excluded) for the time, and ``ramtag run`` for the scores, once per precision.
It then compares scores (max |difference| against the official fp32 scores) and tag sets (Jaccard of
each image's top-k tags, and of the tags over the official thresholds) and prints medians and ratios.
``--random-weights`` writes a full-size RAM++ with calibrated random weights (about 1% of tags over
threshold, as with trained weights) in the official format, so nothing has to be downloaded;
``--checkpoint`` uses real weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import MemorySampler  # noqa: E402

# Runs inside the official environment. It only calls the official package's public functions; the
# tokenizer is replaced by a stand-in because tagging never tokenises (RAM++ only sizes, then
# deletes, the decoder's word embeddings) and the real one needs a Hugging Face download.
OFFICIAL_RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from PIL import Image

    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])

    class StandInTokenizer:
        def __len__(self):
            return 30524

    import importlib
    for name in ("ram.models.utils", "ram.models.ram_plus"):
        importlib.import_module(name).init_tokenizer = lambda *a, **k: StandInTokenizer()
    from ram import get_transform
    from ram.models import ram_plus

    started = time.perf_counter()
    model = ram_plus(pretrained=args["checkpoint"], image_size=384, vit="swin_l").eval()
    startup = time.perf_counter() - started
    transform = get_transform(image_size=384)

    logits, encoder_seconds = [], []
    model.fc.register_forward_hook(lambda m, i, o: logits.append(o.squeeze(-1).float()))
    clock = {}
    model.visual_encoder.register_forward_pre_hook(lambda m, i: clock.__setitem__("t", time.perf_counter()))
    model.visual_encoder.register_forward_hook(
        lambda m, i, o: encoder_seconds.append(time.perf_counter() - clock["t"]))
    per_image = []
    for path in args["images"]:
        t0 = time.perf_counter()
        image = transform(Image.open(path)).unsqueeze(0)
        with torch.no_grad():
            model.generate_tag(image)
        per_image.append(time.perf_counter() - t0)
    scores = torch.sigmoid(torch.cat(logits)).tolist()
    print(json.dumps({
        "startup_s": startup, "per_image_s": per_image, "encoder_s": encoder_seconds,
        "scores": scores, "thresholds": model.class_threshold.tolist(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    """
)


def make_images(folder: Path, count: int) -> list[Path]:
    """Photo-sized JPEGs (1600x1200) with smooth random content."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((1600, 1200), Image.Resampling.BICUBIC)
        path = folder / f"synthetic_{index:03d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def random_checkpoint(path: Path) -> None:
    import torch

    from ramtag.model.config import named_config
    from ramtag.model.convert import export_official
    from ramtag.model.synthetic import random_model

    model = random_model(named_config("ram_plus_swin_large_14m"), seed=0, calibrated=True)  # ~1% of tags pass
    torch.save({"model": export_official(model)}, path)


def run_official(args: argparse.Namespace, checkpoint: Path, images: list[Path]) -> dict:
    payload = json.dumps(
        {"checkpoint": str(checkpoint), "images": [str(p) for p in images], "threads": args.threads}
    )
    env = {**os.environ, "PYTHONPATH": str(args.official_repo)}
    result = subprocess.run(
        [args.official_python, "-c", OFFICIAL_RUNNER, payload],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the official code failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _ramtag(args: argparse.Namespace, command: list[str], *, sample: bool) -> tuple[str, str, float | None]:
    """Run ramtag; with ``sample``, also its peak memory (PSS of the process tree).

    Sampling is kept out of the timed runs: reading /proc/PID/smaps_rollup walks the page tables
    under the memory-map lock, which stalls a process that maps and unmaps activations as ramtag
    does (``ramtag.hostmem``), and so would slow what is being timed.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ramtag", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )
    if sample:
        with MemorySampler(process) as memory:
            stdout, stderr = process.communicate()
    else:
        stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"ramtag {command[0]} failed:\n{stderr[-3000:]}")
    return stdout, stderr, memory.peak_mb if sample else None


def run_ramtag(
    args: argparse.Namespace, checkpoint: Path, folder: Path, tags: Path, precision: str, out: Path,
    batch_size: int,
) -> dict:
    """Time with ``ramtag bench`` (the run pipeline, start-up and a warm-up batch excluded), then
    take the scores from a real ``ramtag run``."""
    common = ["--checkpoint", str(checkpoint), "--tag-list", str(tags), "--device", "cpu",
              "--precision", precision, "--batch-size", str(batch_size)]
    if args.workers is not None:
        common += ["--workers", str(args.workers)]
    stdout, _, _ = _ramtag(args, ["bench", "--images", str(folder), "--warmup", "1", "--json", *common], sample=False)
    timing = json.loads(stdout)
    run = ["run", str(folder), "--out", str(out), "--overwrite", "--all-scores", "--quiet", *common]
    _, _, peak = _ramtag(args, run, sample=True)
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pandas()
    scores = {Path(p).name: np.asarray(s) for p, s in zip(table["path"], table["all_scores"])}
    return {
        "per_image_s": 1.0 / timing["images_per_s"], "scores": scores, "peak_pss_mb": peak,
        "stages": timing["ms_per_image"], "startup_s": timing["startup_s"],
        "peak_rss_mb": timing["peak_rss_mb"], "peak_worker_rss_mb": timing["peak_worker_rss_mb"],
    }


def jaccard(a: set, b: set) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, required=True)
    parser.add_argument("--official-python", default=sys.executable)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--random-weights", action="store_true")
    parser.add_argument("--tag-list", type=Path, help="default: the official repo's ram/data/ram_tag_list.txt")
    parser.add_argument("--images", type=Path)
    parser.add_argument("--synthetic", type=int, default=12)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1],
                        help="one or more: each precision is timed at each (interleaved in every repeat)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    tags = args.tag_list or args.official_repo / "ram" / "data" / "ram_tag_list.txt"
    with tempfile.TemporaryDirectory(prefix="ramtag-compare-") as tmp:
        tmp_path = Path(tmp)
        checkpoint = args.checkpoint
        if args.random_weights:
            checkpoint = tmp_path / "ram_plus_random.pth"
            # In a child process: Linux carries a process's peak RSS over fork and exec, so had this
            # process held the model, every ramtag run started from here would report its peak.
            subprocess.run(
                [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                 "from compare_official import random_checkpoint; from pathlib import Path; "
                 "random_checkpoint(Path(sys.argv[2]))", str(Path(__file__).resolve().parent), str(checkpoint)],
                check=True,
            )
        if args.images:
            folder = args.images
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        else:
            folder = tmp_path / "images"
            images = make_images(folder, args.synthetic)

        # Interleaved (official, then each precision, repeat), so that a machine whose speed drifts
        # over minutes (shared VMs do) moves every side alike rather than whichever ran last.
        # ramtag converts the official checkpoint once, before the first timed run.
        run_ramtag(args, checkpoint, folder, tags, args.precisions[0], tmp_path / "convert.parquet", args.batch_size[0])
        # one name per setting: the precision, and the batch size where several are compared
        settings = {(f"{p} batch {b}" if len(args.batch_size) > 1 else p): (p, b)
                    for p in args.precisions for b in args.batch_size}
        official_runs, ours = [], {name: [] for name in settings}
        for _ in range(args.repeats):
            official_runs.append(run_official(args, checkpoint, images))
            for name, (p, b) in settings.items():
                ours[name].append(run_ramtag(args, checkpoint, folder, tags, p, tmp_path / f"{p}-{b}.parquet", b))

    # The first image of each official run pays for warm-up: leave it out of the per-image time.
    official_s = statistics.median(statistics.mean(r["per_image_s"][1:] or r["per_image_s"]) for r in official_runs)
    encoder_s = statistics.median(statistics.mean(r["encoder_s"][1:] or r["encoder_s"]) for r in official_runs)
    reference = {Path(p).name: np.asarray(s) for p, s in zip(images, official_runs[0]["scores"])}
    thresholds = np.asarray(official_runs[0]["thresholds"])
    report = {
        "official": {
            "per_image_s": official_s, "visual_encoder_s": encoder_s, "head_s": official_s - encoder_s,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in official_runs),
        }
    }
    print(f"official single-image path: {official_s:.3f} s/image "
          f"(visual encoder {encoder_s:.3f} s, rest {official_s - encoder_s:.3f} s), "
          f"peak RSS {report['official']['peak_rss_mb']:.0f} MB")
    for precision, runs in ours.items():
        per_image = statistics.median(r["per_image_s"] for r in runs)
        scores = runs[0]["scores"]
        diff = max(float(np.abs(scores[n] - reference[n]).max()) for n in reference)
        top = statistics.mean(
            jaccard(set(np.argsort(-scores[n])[: args.top_k]), set(np.argsort(-reference[n])[: args.top_k]))
            for n in reference
        )
        over = statistics.mean(
            jaccard(set(np.flatnonzero(scores[n] > thresholds)), set(np.flatnonzero(reference[n] > thresholds)))
            for n in reference
        )
        report[precision] = {
            "per_image_s": per_image, "speedup": official_s / per_image, "max_abs_score_diff": diff,
            f"top{args.top_k}_jaccard": top, "thresholded_jaccard": over,
            "peak_pss_mb": max(r["peak_pss_mb"] for r in runs), "stages": runs[0]["stages"],
            "runs_s": [r["per_image_s"] for r in runs],
        }
        print(f"ramtag {precision}: {per_image:.3f} s/image ({official_s / per_image:.2f}x the official), "
              f"max |score diff| {diff:.2e}, top-{args.top_k} Jaccard {top:.4f}, "
              f"thresholded Jaccard {over:.4f}, peak PSS {report[precision]['peak_pss_mb']:.0f} MB "
              f"(process tree), peak RSS {max(r['peak_rss_mb'] for r in runs):.0f} MB (main process); "
              f"runs {', '.join(f'{r:.3f}' for r in report[precision]['runs_s'])} s/image; "
              f"backbone {runs[0]['stages']['backbone'] / 1000:.3f} s, head {runs[0]['stages']['head'] / 1000:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
