"""How much lower precision changes RAM++'s scores and tags: bf16-mixed, bf16, fp16, int8 against fp32.

One model (random weights in the released architecture, or a checkpoint) tags the same images at
each precision on one device; every precision is compared with fp32 on that device, and, with
``--cpu-reference N``, the device's fp32 with the CPU's fp32 on the first N images (a GPU's fp32
should match the CPU's: ramtag leaves TF32 matrix products off).

    python benchmarks/precision_agreement.py --device cuda --synthetic 64 \\
        --thresholds ram_tag_list_threshold.txt --cpu-reference 8 --json agreement.json
    python benchmarks/precision_agreement.py --device cpu --precisions int8 --synthetic 16
    python benchmarks/precision_agreement.py --device cpu --precisions bf16-mixed bf16 --images ./photos

Random weights are the calibrated ones (``random_model(calibrated=True)``: about 1% of tags over
0.68, as with trained weights); ``--plain-random`` takes the unscaled ones of earlier figures, which
put about a quarter of all tags over threshold.

Figures per precision: max and mean |score difference|, the mean Jaccard index of each image's
top-k tags and of its tags over the thresholds (the official per-tag thresholds when given, else
0.68), the worst image's, tags per image (mean, least, most), the model's seconds per image (this
device, batch ``--batch-size``, for comparing precisions on one machine), and whether any score came
out NaN. Random weights recognise nothing; tag-set agreement measured on them is an estimate.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ramtag.bench import model_config, synthetic_vocabulary, write_synthetic_images
from ramtag.devices import resolve_device
from ramtag.inputs import decode_image
from ramtag.model.labels import TagVocabulary
from ramtag.model.mixed import RECIPE, with_islands
from ramtag.model.synthetic import random_model
from ramtag.tagger import Tagger


def jaccard(a: set, b: set) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def scores_at(
    model, vocabulary, pixels: torch.Tensor, device, precision: str, batch_size: int, recipe: str | None = None
) -> np.ndarray:
    """Scores at ``precision``, or with ``recipe``'s blocks in bf16 (``model/mixed.py``) in fp32."""
    tagger = Tagger(copy.deepcopy(model), vocabulary, device=device, precision=precision)
    if recipe is not None:  # (an island casts its packed linear layers to bf16, packed again)
        with_islands(tagger.model, recipe)
    started = time.perf_counter()
    parts = [tagger.scores(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    SECONDS[recipe or precision] = (time.perf_counter() - started) / len(pixels)
    del tagger
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return np.concatenate(parts)


SECONDS: dict[str, float] = {}


def bf16_shares(model, pixels: torch.Tensor, recipes: list[str]) -> dict[str, float]:
    """For each recipe, the share of the model's arithmetic (FLOPs of one fp32 pass) its bf16 blocks
    hold: what sets its speed-up on a CPU whose bf16 matrix products are several times faster."""
    from torch.utils.flop_counter import FlopCounterMode

    from ramtag.model.mixed import parts

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(pixels[:1])
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    names = {id(module): name for name, module in model.named_modules()}
    shares = {}
    for recipe in recipes:
        chosen = {f"{names[id(owner)]}.{attr}".lstrip(".") for owner, attr in parts(model, recipe)}
        shares[recipe] = sum(counts.get(f"RamModel.{name}", 0) for name in chosen) / counts["Global"]
    return shares


def compare(scores: np.ndarray, reference: np.ndarray, thresholds: np.ndarray, top_k: int) -> dict:
    rows = range(len(reference))
    over = [
        jaccard(set(np.flatnonzero(scores[n] > thresholds)), set(np.flatnonzero(reference[n] > thresholds)))
        for n in rows
    ]
    counts = (scores > thresholds).sum(axis=1)
    return {
        "max_abs_score_diff": float(np.nanmax(np.abs(scores - reference))),
        "mean_abs_score_diff": float(np.nanmean(np.abs(scores - reference))),
        f"top{top_k}_jaccard": statistics.mean(
            jaccard(set(np.argsort(-scores[n])[:top_k]), set(np.argsort(-reference[n])[:top_k])) for n in rows
        ),
        "thresholded_jaccard": statistics.mean(over),
        "worst_thresholded_jaccard": min(over),
        "thresholded_jaccard_each": [round(value, 4) for value in over],  # per image, in file order
        "tags_per_image": float(counts.mean()),
        "tags_per_image_range": [int(counts.min()), int(counts.max())],
        "tags_each": counts.tolist(),
        "nan_scores": int(np.isnan(scores).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=["bf16-mixed", "bf16", "fp16"])
    add_common_arguments(parser)
    parser.add_argument("--cpu-reference", type=int, default=0, metavar="N")
    parser.add_argument("--plain-random", action="store_true", help="unscaled random weights")
    parser.add_argument("--save-scores", type=Path, metavar="FILE.npz", help="also keep every precision's scores")
    parser.add_argument("--recipes", nargs="*", default=[], metavar="SPEC",
                        help=f"other choices of bf16 blocks, e.g. swin.attn,head.ffn (bf16-mixed: {RECIPE})")
    args = parser.parse_args()
    model, thresholds, vocabulary = model_and_vocabulary(args, calibrated=not args.plain_random)
    num_tags = model.config.num_tags

    with tempfile.TemporaryDirectory(prefix="ramtag-agreement-") as tmp:
        paths = (
            sorted(p for p in args.images.iterdir() if p.is_file())
            if args.images
            else write_synthetic_images(Path(tmp), args.synthetic)
        )
        probe = Tagger(model, vocabulary, pack=False)  # only for its preprocessing (packing would change model)
        pixels = torch.stack([probe.preprocess(decode_image(p)) for p in paths])

    device = resolve_device(args.device)
    reference = scores_at(model, vocabulary, pixels, device, "fp32", args.batch_size)
    report = {"device": str(device), "images": len(paths), "num_tags": num_tags, "files": [p.name for p in paths]}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
    if args.cpu_reference and device.type != "cpu":
        count = min(args.cpu_reference, len(paths))
        cpu = scores_at(model, vocabulary, pixels[:count], torch.device("cpu"), "fp32", args.batch_size)
        report[f"fp32_{device.type}_vs_cpu"] = compare(reference[:count], cpu, thresholds, args.top_k)
    counts = (reference > thresholds).sum(axis=1)
    report["fp32"] = {"tags_per_image": float(counts.mean()), "tags_per_image_range": [int(counts.min()), int(counts.max())],
                      "tags_each": counts.tolist(), "model_s_per_image": SECONDS["fp32"]}
    kept = {"fp32": reference}
    for name in args.precisions:  # int8: CPUs only
        kept[name] = scores = scores_at(model, vocabulary, pixels, device, name, args.batch_size)
        report[name] = {**compare(scores, reference, thresholds, args.top_k), "model_s_per_image": SECONDS[name]}
    for spec in args.recipes:
        kept[spec] = scores = scores_at(model, vocabulary, pixels, device, "fp32", args.batch_size, recipe=spec)
        report[spec] = {**compare(scores, reference, thresholds, args.top_k), "model_s_per_image": SECONDS[spec]}
    if args.save_scores:  # every precision's scores, to compare at other thresholds without the model
        np.savez_compressed(args.save_scores, files=np.array(report["files"]), **kept)
    shares = bf16_shares(model, pixels, [RECIPE, *args.recipes])
    for key, share in shares.items():
        report.setdefault("bf16-mixed" if key == RECIPE else key, {})["bf16_flop_share"] = round(share, 4)

    for key, figures in report.items():
        if isinstance(figures, dict) and "max_abs_score_diff" in figures:
            print(
                f"{key:<18} {agreement_words(figures, args.top_k)}  tags/image {figures['tags_per_image']:.1f}  NaN {figures['nan_scores']}  "
                f"{figures.get('model_s_per_image', float('nan')):.2f} s/image"
                + (f"  bf16 share {figures['bf16_flop_share']:.0%}" if "bf16_flop_share" in figures else ""),
                file=sys.stderr,
            )
    write_report(report, args.json)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options this script shares with ``preprocess_agreement.py``: model, images, output."""
    parser.add_argument("--config", default="ram_plus_swin_large_14m", help="with random weights")
    parser.add_argument("--checkpoint", type=Path, help="real weights instead of random ones")
    parser.add_argument("--thresholds", type=Path, help="per-tag thresholds, one per line")
    parser.add_argument("--images", type=Path, help="a folder of images (default: generated photos)")
    parser.add_argument("--synthetic", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--json", type=Path)


def model_and_vocabulary(args: argparse.Namespace, *, calibrated: bool) -> tuple:
    """The model (``--checkpoint``, or random weights of ``--config``), the thresholds (official
    per-tag ones from ``--thresholds``, else 0.68) and a made-up vocabulary of the model's size."""
    if args.checkpoint:
        from ramtag.model.load import load_model

        model, _ = load_model(args.checkpoint)
    else:
        model = random_model(model_config(args.config), seed=0, calibrated=calibrated)
    num_tags = model.config.num_tags
    thresholds = np.loadtxt(args.thresholds, dtype=np.float64) if args.thresholds else np.full(num_tags, 0.68)
    if thresholds.shape != (num_tags,):
        raise SystemExit(f"{args.thresholds}: {thresholds.size} thresholds for a model of {num_tags} tags")
    names = list(synthetic_vocabulary(num_tags).tags)
    return model, thresholds, TagVocabulary.from_names(names, thresholds=thresholds.tolist())


def agreement_words(figures: dict, top_k: int) -> str:
    """``compare``'s figures in one line."""
    return (
        f"max |diff| {figures['max_abs_score_diff']:.2e}  mean {figures['mean_abs_score_diff']:.2e}  "
        f"top-{top_k} Jaccard {figures[f'top{top_k}_jaccard']:.4f}  "
        f"thresholded Jaccard {figures['thresholded_jaccard']:.4f} (worst {figures['worst_thresholded_jaccard']:.3f})"
    )


def write_report(report: dict, path: Path | None) -> None:
    """The whole report as JSON: to ``path``, or to stdout (where a script can read it)."""
    if path:
        path.write_text(json.dumps(report, indent=1))
    else:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
