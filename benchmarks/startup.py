"""Start-up of ``ramtag run`` beside PyTorch's own import time, measured side by side.

Each round runs ``python -c "import torch"`` (timed inside, from just before the import) and then
``ramtag run IMAGE --verbose`` on one image, which says when it is ready to tag, timed from when
ramtag was first imported; rounds alternate so a noisy machine slows both alike. Medians are
reported, and the difference is what ramtag adds to torch's import: its other imports, the model
from the converted-weights cache, the outputs.

    python benchmarks/startup.py --checkpoint ram_plus_swin_large_14m.pth --image photo.jpg --rounds 5 \\
        --tag-list ram_tag_list.txt --thresholds ram_tag_list_threshold.txt
    python benchmarks/startup.py --fixture ../shared/fixtures/official_ramplus_tiny --rounds 5
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TORCH = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
READY = re.compile(r"ready to tag ([0-9.]+) s after start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="weights (converted once before the rounds)")
    parser.add_argument("--fixture", type=Path, help="a folder with checkpoint.pth, tags.txt, thresholds.txt")
    parser.add_argument("--image", type=Path, help="the image to tag (default: the fixture's first)")
    parser.add_argument("--tag-list", type=Path, help="with --checkpoint, where the official lists are not cached")
    parser.add_argument("--thresholds", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    model: list[str] = []
    if args.fixture:
        f = args.fixture
        model = ["--checkpoint", str(f / "checkpoint.pth"), "--tag-list", str(f / "tags.txt"),
                 "--thresholds", str(f / "thresholds.txt")]
        image = args.image or sorted((f / "images").iterdir())[0]
    elif args.checkpoint:
        model, image = ["--checkpoint", str(args.checkpoint)], args.image
        model += ["--tag-list", str(args.tag_list)] if args.tag_list else []
        model += ["--thresholds", str(args.thresholds)] if args.thresholds else []
    else:
        raise SystemExit("give --checkpoint FILE --image IMAGE, or --fixture FOLDER")
    if image is None:
        raise SystemExit("give --image IMAGE")
    with tempfile.TemporaryDirectory(prefix="ramtag-startup-") as tmp:
        def ramtag_ready(number: int) -> tuple[float, float]:
            command = [sys.executable, "-m", "ramtag", "run", str(image), "--out", f"{tmp}/{number}.jsonl",
                       "--verbose", "--precision", args.precision, *model]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"ramtag run failed: {done.stderr[-800:]}")
            match = READY.search(done.stderr)
            if match is None:
                raise SystemExit(f"no start-up line in: {done.stderr[-500:]}")
            return float(match.group(1)), time.perf_counter() - started

        ramtag_ready(0)  # converts the weights into the cache once, and warms the page cache
        torch_s, ready_s, total_s = [], [], []
        for number in range(1, args.rounds + 1):
            torch_s.append(float(subprocess.run([sys.executable, "-c", TORCH], capture_output=True, text=True,
                                                check=True).stdout))
            ready, total = ramtag_ready(number)
            ready_s.append(ready)
            total_s.append(total)
    report = {
        "rounds": args.rounds,
        "import_torch_s": statistics.median(torch_s),
        "ramtag_ready_s": statistics.median(ready_s),
        "ramtag_adds_s": statistics.median(r - t for r, t in zip(ready_s, torch_s)),
        "ramtag_run_one_image_wall_s": statistics.median(total_s),
        "all": {"import_torch_s": torch_s, "ramtag_ready_s": ready_s},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
