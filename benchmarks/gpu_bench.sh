#!/usr/bin/env bash
# The prepared GPU check of the speed issue: one script, about 5 minutes on an H100.
#
#   bash benchmarks/gpu_bench.sh [OUT_DIR]
#
# Full-size RAM++ with random weights (nothing to download): fp32, bf16 and fp16 at batch 64, a
# batch sweep in bf16, the same with --draft-decode, then decoding routes (Pillow per core against
# nvJPEG on the device). Each result is one JSON file in OUT_DIR (default: ./gpu-bench); the
# stage split in them says whether decoding (wait) or the model is the bottleneck.
set -euo pipefail
out="${1:-${OUT:-gpu-bench}}"
mkdir -p "$out"
cores=$(python -c "import os; print(len(os.sched_getaffinity(0)))")
workers=$(( cores > 1 ? cores - 1 : 0 ))
images=$(mktemp -d)
trap 'rm -rf "$images"' EXIT
# Generated once (about a minute), shared by every run: 1536 photo-like 1600x1200 JPEGs.
python -c "import sys; from pathlib import Path; from ramtag.bench import write_synthetic_images as w; w(Path(sys.argv[1]), 1536)" "$images"
common=(--random-weights --device cuda --images "$images" --warmup 2 --workers "$workers" --json)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

for precision in fp32 bf16 fp16; do
  ramtag bench "${common[@]}" --precision "$precision" --batch-size 64 >"$out/bench_${precision}_b64.json"
done
for batch in 32 128 256; do
  ramtag bench "${common[@]}" --precision bf16 --batch-size "$batch" >"$out/bench_bf16_b${batch}.json"
done
ramtag bench "${common[@]}" --precision bf16 --batch-size 64 --draft-decode >"$out/bench_bf16_b64_draft.json"
python benchmarks/decode_throughput.py --synthetic 64 --json >"$out/decode.json"

python - "$out" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("bench_*.json")):
    d = json.loads(path.read_text())
    ms = d["ms_per_image"]
    print(f"{path.stem:<24} {d['images_per_s']:8.1f} images/s  wait {ms['wait']:6.2f} ms  "
          f"backbone {ms['backbone']:6.2f}  head {ms['head']:6.2f}  GPU peak {d['peak_gpu_mb']} MB")
PY
