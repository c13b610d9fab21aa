#!/usr/bin/env bash
# The prepared GPU check of the speed issue: one script, about 6 minutes on an H100 with 16 cores.
#
#   bash benchmarks/gpu_bench.sh [OUT_DIR]
#
# Full-size RAM++ with random weights (nothing to download):
# - score agreement of bf16 and fp16 with fp32 on the GPU, and of the GPU's fp32 with the CPU's;
# - `ramtag bench` in fp32, bf16 and fp16 at batch 64, the default precision (fp16) at batch 32, 128
#   and 256, with 4 decoding workers against the default (every core but one), and with
#   --draft-decode;
# - decoding routes per image (Pillow on one core against nvJPEG on the device);
# - JPEGs decoded on the GPU (--preprocess gpu): its scores and tags against pillow's
#   (benchmarks/preprocess_agreement.py) and `ramtag bench` with each route, with the default
#   workers and with 4 (a GPU with few host cores).
# PARTS picks some (default all): precision, batch, decode, preprocess; PARTS=preprocess takes about
# 4 minutes. --preprocess gpu decodes with TorchCodec where it is installed (carry its wheel), else
# with torchvision's decode_jpeg.
# Every result is one line of OUT_DIR/results.jsonl ({"label": ..., "result": ...}); what the
# commands printed goes to OUT_DIR/log.txt. A part that fails is logged and the rest still runs.
# Run from the repository root. PYTHON (default python3) is the interpreter; for a dry run of the
# plumbing elsewhere, DEVICE=cpu CONFIG=tiny.json COPIES=1 use another device, a small random model
# and fewer files; THRESHOLDS=file gives per-tag thresholds for the agreement figures.
set -uo pipefail
out="${1:-${OUT:-gpu-bench}}"
py="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
config=(${CONFIG:+--config "$CONFIG"})
mkdir -p "$out"
results="$out/results.jsonl"
log="$out/log.txt"
: >"$results"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
cores=$("$py" -c "import os; print(len(os.sched_getaffinity(0)))")
images=$(mktemp -d)
trap 'rm -rf "$images"' EXIT

record() {  # record LABEL COMMAND...: run it, keep its JSON output as one line of results.jsonl
  local label="$1" started=$SECONDS
  shift
  echo "== $label: $*" >>"$log"
  if "$@" >"$images.json" 2>>"$log"; then
    "$py" -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "result": json.load(open(sys.argv[2]))}))' \
      "$label" "$images.json" >>"$results"
    echo "$label: done in $(( SECONDS - started )) s"
  else
    echo "$label: FAILED after $(( SECONDS - started )) s (see log.txt)"
  fi
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  grep -m1 'model name' /proc/cpuinfo
  echo "cores: $cores; CPU flags: $(grep -m1 -o -w -E 'avx512_bf16|amx_bf16|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  "$py" -c "import torch, timm, PIL; print('torch', torch.__version__, 'timm', timm.__version__, 'pillow', PIL.__version__)"
} 2>&1 | tee "$out/machine.txt"

# 64 different photo-like 1600x1200 JPEGs, each also linked under 47 more names: 3072 files, so that
# every worker decodes several batches even at batch 256. Every file is decoded on its own, so
# decoding costs what 3072 different photos of this kind would.
"$py" -c "import sys; from pathlib import Path; from ramtag.bench import write_synthetic_images as w; w(Path(sys.argv[1]), 64, processes=$cores)" "$images"
for copy in $(seq 1 "${COPIES:-47}"); do
  for file in "$images"/synthetic_000[0-9][0-9].jpg; do ln "$file" "${file%.jpg}_$copy.jpg"; done
done
echo "images: $(ls "$images" | wc -l)"

part() { [[ " ${PARTS:-precision batch decode preprocess} " == *" $1 "* ]]; }
common=(--random-weights "${config[@]}" --device "$device" --images "$images" --warmup 2 --json)
if part precision; then
  record agreement "$py" benchmarks/precision_agreement.py --device "$device" "${config[@]}" --synthetic 64 --batch-size 32 \
    --cpu-reference 4 ${THRESHOLDS:+--thresholds "$THRESHOLDS"}
  for precision in fp32 bf16 fp16; do
    record "${precision}_b64" "$py" -m ramtag bench "${common[@]}" --precision "$precision" --batch-size 64
  done
fi
if part batch; then
  for batch in 32 128 256; do
    record "auto_b${batch}" "$py" -m ramtag bench "${common[@]}" --batch-size "$batch"
  done
  record auto_b64_4_workers "$py" -m ramtag bench "${common[@]}" --batch-size 64 --workers 4
  record auto_b64_draft "$py" -m ramtag bench "${common[@]}" --batch-size 64 --draft-decode
fi
if part decode; then
  record decode "$py" benchmarks/decode_throughput.py --synthetic 64 --device "$device" --json
fi
if part preprocess; then
  record preprocess_agreement "$py" benchmarks/preprocess_agreement.py --device "$device" "${config[@]}" \
    --synthetic 128 --batch-size 64 ${THRESHOLDS:+--thresholds "$THRESHOLDS"}
  routes=$([ "$device" = cpu ] && echo pillow || echo pillow gpu)  # ramtag bench refuses gpu on a CPU
  for route in $routes; do
    record "preprocess_${route}" "$py" -m ramtag bench "${common[@]}" --batch-size 64 --preprocess "$route"
    record "preprocess_${route}_4_workers" "$py" -m ramtag bench "${common[@]}" --batch-size 64 --workers 4 \
      --preprocess "$route"
  done
fi

"$py" - "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    entry = json.loads(line)
    label, d = entry["label"], entry["result"]
    if "images_per_s" in d:
        ms = d["ms_per_image"]
        print(f"{label:<20} {d['settings']['precision']} {d['images_per_s']:8.1f} images/s  workers {d['settings']['workers']:>2}  "
              + "  ".join(f"{k} {v:.2f}" for k, v in ms.items())
              + f"  GPU peak {d['peak_gpu_mb']} MB  RSS {d['peak_rss_mb']} MB  ready {d['ready_s']} s")
    else:
        print(label, json.dumps(d)[:1500])
PY
