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

Beside the images, a handful of awkward JPEGs go through every route (``odd_files``: every EXIF
orientation, orientation in XMP alone or in big-endian EXIF, greyscale progressive, CMYK, Adobe's
RGB transform, a cut-off file, a bogus Huffman table): ``odd`` reports their worst score difference,
and ``same_errors`` whether the same files failed (the cut-off and bogus ones must, with Pillow's
words). Speed figures include them; ``--no-odd`` leaves them out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# the same figures as for precisions (benchmarks/ is on sys.path)
from precision_agreement import add_common_arguments, agreement_words, compare, model_and_vocabulary, write_report
from ramtag.bench import write_synthetic_images
from ramtag.devices import resolve_device
from ramtag.inputs import discover
from ramtag.pipeline import default_workers, run_batches
from ramtag.tagger import Tagger


def odd_files(folder: Path) -> None:
    """JPEGs that test the device route's edges, made from one generated photo."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "source").mkdir()
    photo = Image.open(write_synthetic_images(folder / "source", 1, (800, 600))[0]).convert("RGB")

    def save(name: str, image: Image.Image, orientation: int | None = None, **options) -> bytes:
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        out = io.BytesIO()
        image.save(out, "JPEG", exif=exif.tobytes(), quality=90, **options)
        (folder / name).write_bytes(out.getvalue())
        return out.getvalue()

    for orientation in range(2, 9):
        save(f"orientation_{orientation}.jpg", photo, orientation)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    save("xmp_orientation.jpg", photo, xmp=xmp)
    plain = save("plain.jpg", photo)
    big_endian = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x04\x00\x00\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00"
    (folder / "big_endian_exif.jpg").write_bytes(plain[:2] + b"\xff\xe1" + (len(big_endian) + 2).to_bytes(2, "big") + big_endian + plain[2:])
    save("grey_progressive.jpg", photo.convert("L"), 3, progressive=True)
    save("cmyk.jpg", photo.convert("CMYK"))
    save("adobe_rgb.jpg", photo, keep_rgb=True)
    (folder / "cut_off.jpg").write_bytes(plain[: len(plain) // 2])
    bogus = bytearray(plain)
    table = bogus.find(b"\xff\xc4")
    bogus[table + 5 : table + 21] = b"\xff" * 16
    (folder / "bogus_huffman.jpg").write_bytes(bytes(bogus))
    for made in (folder / "source").iterdir():
        made.unlink()
    (folder / "source").rmdir()


def scores_by_route(
    tagger: Tagger, folders: list[Path], route: str, batch_size: int, workers: int
) -> tuple[dict[str, np.ndarray], dict[str, str], float]:
    """Every image's scores through the pipeline with ``route``, the errors, and images/s."""
    started = time.perf_counter()
    records = [
        record
        for batch in run_batches(discover(folders), tagger, batch_size=batch_size, workers=workers, preprocessing=route)
        for record in batch
    ]
    seconds = time.perf_counter() - started
    scores = {record.key: np.asarray(record.result.all_scores) for record in records if record.error is None}
    errors = {record.key: record.error for record in records if record.error is not None}
    return scores, errors, len(records) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help="the same for every route (default fp32)")
    parser.add_argument("--routes", nargs="+", default=None, help="compared with pillow (default: gpu)")
    add_common_arguments(parser)
    parser.add_argument("--workers", type=int, help="decoding workers (default: the device's)")
    parser.add_argument("--no-odd", action="store_true", help="leave out the awkward JPEGs")
    args = parser.parse_args()
    model, thresholds, vocabulary = model_and_vocabulary(args, calibrated=True)
    device = resolve_device(args.device)
    tagger = Tagger(model, vocabulary, device=device, precision=args.precision)
    workers = default_workers(device) if args.workers is None else args.workers
    routes = args.routes or ["gpu"]

    with tempfile.TemporaryDirectory(prefix="ramtag-preprocess-") as tmp:
        folder = args.images or Path(tmp) / "photos"
        if args.images is None:
            folder.mkdir()
            write_synthetic_images(folder, args.synthetic)
        folders = [folder]
        if not args.no_odd:
            odd_files(Path(tmp) / "odd")
            folders.append(Path(tmp) / "odd")
        warm = Path(tmp) / "warm"
        warm.mkdir()
        for path in sorted(p for p in folder.iterdir() if p.is_file())[: args.batch_size]:
            (warm / path.name).symlink_to(path.resolve())
        scores_by_route(tagger, [warm], "pillow", args.batch_size, 0)  # first passes through the model
        reference, reference_errors, rate = scores_by_route(tagger, folders, "pillow", args.batch_size, workers)
        photos = sorted(key for key in reference if not key.startswith(str(Path(tmp) / "odd")))
        odd = sorted(set(reference) - set(photos))
        report = {"device": str(device), "precision": tagger.precision.name, "images": len(photos),
                  "batch_size": args.batch_size, "workers": workers,
                  "pillow": {"images_per_s": round(rate, 2), "errors": reference_errors}}
        for route in routes:
            scores, errors, rate = scores_by_route(tagger, folders, route, args.batch_size, workers)
            if set(scores) != set(reference):
                print(f"{route}: {sorted(set(reference) ^ set(scores))} tagged by one route only", file=sys.stderr)
            figures = compare(np.stack([scores[key] for key in photos]), np.stack([reference[key] for key in photos]),
                              thresholds, args.top_k)
            common = [key for key in odd if key in scores]
            figures["odd_max_abs_score_diff"] = max(
                (float(np.abs(scores[key] - reference[key]).max()) for key in common), default=None
            )
            figures["same_errors"] = set(errors) == set(reference_errors)
            figures["errors"] = errors
            report[route] = {**figures, "images_per_s": round(rate, 2)}

    for route in routes:
        figures = report[route]
        print(
            f"{route:<7} {agreement_words(figures, args.top_k)}  odd files max |diff| {figures['odd_max_abs_score_diff']}  same errors {figures['same_errors']}  "
            f"{figures['images_per_s']:.1f} images/s (pillow {report['pillow']['images_per_s']:.1f})",
            file=sys.stderr,
        )
    write_report(report, args.json)


if __name__ == "__main__":
    main()
