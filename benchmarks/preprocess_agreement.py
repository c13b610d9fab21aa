"""How much the preprocessing route changes RAM++'s scores and tags, and what each route costs.

The same images go through the real pipeline (``run_batches``: decoding workers, batching, the model)
once per ``--preprocess`` route, with the same model and precision, and compared with ``pillow``
(the official preprocessing): ``gpu`` decodes plain JPEGs in the main process on the model's device
(nvJPEG on CUDA) and resizes them there; on a CPU device the same code decodes with libjpeg-turbo,
which makes a dry run of it (``ramtag run`` refuses ``--preprocess gpu`` without a CUDA GPU).

    python benchmarks/preprocess_agreement.py --device cuda --synthetic 256 \\
        --thresholds ram_tag_list_threshold.txt --json preprocess.json
    python benchmarks/preprocess_agreement.py --device cpu --images ./photos

Figures per route: max and mean |score difference|, top-k and over-threshold Jaccard (mean and the
worst image), and images/s of the whole pass (decode, model, results) with ``--workers`` decoding
workers; one pass each, in the order given, after a warm-up pass of ``pillow`` on the first batch.
Random weights are the calibrated ones (about 1% of tags over threshold, as with trained weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from precision_agreement import compare  # the same figures as for precisions (benchmarks/ is on sys.path)
from ramtag.bench import model_config, synthetic_vocabulary, write_synthetic_images
from ramtag.devices import resolve_device
from ramtag.inputs import discover
from ramtag.model.labels import TagVocabulary
from ramtag.model.synthetic import random_model
from ramtag.pipeline import default_workers, run_batches
from ramtag.tagger import Tagger


def scores_by_route(tagger: Tagger, folder: Path, route: str, batch_size: int, workers: int) -> tuple[np.ndarray, float]:
    """Every image's scores (in path order) through the pipeline with ``route``, and images/s."""
    started = time.perf_counter()
    records = [
        record
        for batch in run_batches(discover([folder]), tagger, batch_size=batch_size, workers=workers, preprocessing=route)
        for record in batch
    ]
    seconds = time.perf_counter() - started
    failed = [record.key for record in records if record.error is not None]
    if failed:
        raise SystemExit(f"{route}: {len(failed)} images failed, e.g. {failed[0]}")
    records.sort(key=lambda record: record.key)
    return np.stack([record.result.all_scores for record in records]), len(records) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help="the same for every route (default fp32)")
    parser.add_argument("--routes", nargs="+", default=None, help="compared with pillow (default: gpu)")
    parser.add_argument("--config", default="ram_plus_swin_large_14m", help="with random weights")
    parser.add_argument("--checkpoint", type=Path, help="real weights instead of random ones")
    parser.add_argument("--thresholds", type=Path, help="per-tag thresholds, one per line")
    parser.add_argument("--images", type=Path, help="a folder of images (default: generated photos)")
    parser.add_argument("--synthetic", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, help="decoding workers (default: the device's)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    if args.checkpoint:
        from ramtag.model.load import load_model

        model, _ = load_model(args.checkpoint)
    else:
        model = random_model(model_config(args.config), seed=0, calibrated=True)
    num_tags = model.config.num_tags
    thresholds = np.loadtxt(args.thresholds, dtype=np.float64) if args.thresholds else np.full(num_tags, 0.68)
    if thresholds.shape != (num_tags,):
        raise SystemExit(f"{args.thresholds}: {thresholds.size} thresholds for a model of {num_tags} tags")
    vocabulary = TagVocabulary.from_names(list(synthetic_vocabulary(num_tags).tags), thresholds=thresholds.tolist())
    device = resolve_device(args.device)
    tagger = Tagger(model, vocabulary, device=device, precision=args.precision)
    workers = default_workers(device) if args.workers is None else args.workers
    routes = args.routes or ["gpu"]

    with tempfile.TemporaryDirectory(prefix="ramtag-preprocess-") as tmp:
        folder = args.images or Path(tmp)
        if args.images is None:
            write_synthetic_images(folder, args.synthetic)
        warm = Path(tmp) / "warm"
        warm.mkdir()
        for path in sorted(p for p in folder.iterdir() if p.is_file())[: args.batch_size]:
            (warm / path.name).symlink_to(path.resolve())
        scores_by_route(tagger, warm, "pillow", args.batch_size, 0)  # first passes through the model
        reference, rate = scores_by_route(tagger, folder, "pillow", args.batch_size, workers)
        report = {"device": str(device), "precision": tagger.precision.name, "images": len(reference),
                  "batch_size": args.batch_size, "workers": workers, "pillow": {"images_per_s": round(rate, 2)}}
        for route in routes:
            scores, rate = scores_by_route(tagger, folder, route, args.batch_size, workers)
            report[route] = {**compare(scores, reference, thresholds, args.top_k), "images_per_s": round(rate, 2)}

    for route in routes:
        figures = report[route]
        print(
            f"{route:<7} max |diff| {figures['max_abs_score_diff']:.2e}  mean {figures['mean_abs_score_diff']:.2e}  "
            f"top-{args.top_k} Jaccard {figures[f'top{args.top_k}_jaccard']:.4f}  "
            f"thresholded Jaccard {figures['thresholded_jaccard']:.4f} (worst {figures['worst_thresholded_jaccard']:.3f})  "
            f"{figures['images_per_s']:.1f} images/s (pillow {report['pillow']['images_per_s']:.1f})",
            file=sys.stderr,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    else:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
