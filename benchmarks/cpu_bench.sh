#!/usr/bin/env bash
# The prepared CPU check of the speed issue, for a machine with native bf16 (AMX or AVX-512 BF16):
# everything README's table of precisions on CPUs needs, from one run.
#
#   bash benchmarks/cpu_bench.sh [OUT_DIR]
#
# Full-size RAM++ with calibrated random weights (nothing to download):
# - machine: CPU model, its bf16 flags, what ramtag detects (`--precision auto` resolves to);
# - precision: `ramtag bench` at the default batch (1 on CPUs) in fp32, bf16-mixed and bf16, ROUNDS
#   rounds alternating (a shared VM drifts: every precision sees the same hours), on COUNT generated
#   1600x1200 JPEGs;
# - batch: the same at batch 4 for fp32 and bf16-mixed, alternating with batch 1 (the CPU default
#   of batch 1 was chosen on an AVX2 CPU: is it right where bf16 is native too?);
# - packing: fp32 with the linear layers packed for oneDNN (the default on x86) alternating with
#   PyTorch's own nn.Linear (RAMTAG_PACKED_LINEAR=0);
# - agreement: benchmarks/precision_agreement.py, bf16-mixed, bf16 and the other recipes of the
#   README's table against fp32, on PHOTOS (a folder of real photos) or generated ones;
# - startup: benchmarks/startup.py on a full-size checkpoint in the official format (written here,
#   1.3 GB), beside `import torch`, in fp32, auto and fp32 with nn.Linear; needs TAG_LIST and
#   THRESHOLDS (the official lists);
# - official: benchmarks/compare_official.py fp32 and bf16-mixed against the official single-image
#   path, when OFFICIAL_REPO (a checkout of the official code) and OFFICIAL_PYTHON are set;
# - suite: the test suite (`python -m pytest -q`), which must pass on such a CPU too.
# PARTS picks some (default all but suite); each result is one line of OUT_DIR/results.jsonl, what the
# commands printed goes to OUT_DIR/log.txt, and a part that fails is logged while the rest runs.
# At the end the README's table of images/s per precision: medians over the rounds.
# Run from the repository root. PYTHON (default python3) is the interpreter. A dry run of the plumbing
# on any CPU: CONFIG=tiny.json COUNT=8 ROUNDS=1 PARTS="machine precision agreement" (a small model).
set -uo pipefail
out="${1:-${OUT:-cpu-bench}}"
py="${PYTHON:-python3}"
rounds="${ROUNDS:-3}"
count="${COUNT:-16}"
config=(${CONFIG:+--config "$CONFIG"})
mkdir -p "$out"
results="$out/results.jsonl"
log="$out/log.txt"
: >"$results"
: >"$log"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

_append() {  # _append LABEL FILE: FILE's JSON as one line of results.jsonl (a failure goes to the log)
  "$py" -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "result": json.load(open(sys.argv[2]))}))' \
    "$1" "$2" >>"$results" 2>>"$log"
}
record() {  # record LABEL COMMAND...: run it, keep its JSON output as one line of results.jsonl
  local label="$1" started=$SECONDS
  shift
  echo "== $label: $*" >>"$log"
  if "$@" >"$work/out.json" 2>>"$log" && _append "$label" "$work/out.json"; then
    echo "$label: done in $(( SECONDS - started )) s"
  else
    echo "$label: FAILED after $(( SECONDS - started )) s (see log.txt)"
  fi
}
keep() {  # keep LABEL FILE COMMAND...: run a script that writes its figures to FILE (and prints words)
  local label="$1" file="$2" started=$SECONDS
  shift 2
  echo "== $label: $*" >>"$log"
  if "$@" >>"$log" 2>&1 && [ -s "$file" ] && _append "$label" "$file"; then
    echo "$label: done in $(( SECONDS - started )) s"
  else
    echo "$label: FAILED after $(( SECONDS - started )) s (see log.txt)"
  fi
}
part() { [[ " ${PARTS:-machine precision batch packing agreement startup official} " == *" $1 "* ]]; }

if part machine; then
  { grep -m1 'model name' /proc/cpuinfo
    echo "cores: $("$py" -c 'import os; print(len(os.sched_getaffinity(0)))')"
    echo "bf16 flags: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16|amx_tile|amx_fp16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    "$py" -c "from ramtag.cpu import native_bf16; print('ramtag: native bf16:', native_bf16() or 'none (auto is fp32)')"
    "$py" -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads(), 'oneDNN', torch.backends.mkldnn.is_available())"
  } 2>&1 | tee "$out/machine.txt"
fi

images="$work/images"
mkdir -p "$images"
"$py" -c "import sys; from pathlib import Path; from ramtag.bench import write_synthetic_images as w; w(Path(sys.argv[1]), int(sys.argv[2]))" \
  "$images" "$count"

if part precision; then
  for round in $(seq 1 "$rounds"); do
    for precision in fp32 bf16-mixed bf16; do
      record "bench_${precision}_${round}" "$py" -m ramtag bench --random-weights ${config[@]+"${config[@]}"} --device cpu \
        --images "$images" --warmup 1 --precision "$precision" --json
    done
  done
fi

if part batch; then
  for round in $(seq 1 "$rounds"); do
    for precision in fp32 bf16-mixed; do
      for batch in 1 4; do
        record "batch_${precision}_${batch}_${round}" "$py" -m ramtag bench --random-weights ${config[@]+"${config[@]}"} \
          --device cpu --images "$images" --batch-size "$batch" --warmup 1 --precision "$precision" --json
      done
    done
  done
fi

if part packing; then  # linear layers packed for oneDNN (the default on x86 CPUs) against nn.Linear's
  for round in $(seq 1 "$rounds"); do
    for packed in 1 0; do
      record "packing_${packed}_${round}" env RAMTAG_PACKED_LINEAR=$packed "$py" -m ramtag bench --random-weights \
        ${config[@]+"${config[@]}"} --device cpu --images "$images" --warmup 1 --precision fp32 --json
    done
  done
fi

if part agreement; then
  keep agreement "$work/agreement.json" "$py" benchmarks/precision_agreement.py --device cpu ${config[@]+"${config[@]}"} \
    --images "${PHOTOS:-$images}" --batch-size 1 --precisions bf16-mixed bf16 \
    --recipes head.ffn swin.mlp swin0.mlp,swin1.mlp,swin3.mlp,head.ffn swin.mlp,head.ffn \
    swin.attn,swin.mlp,swin.merge,head.ffn ${THRESHOLDS:+--thresholds "$THRESHOLDS"} --save-scores "$out/scores.npz" \
    --json "$work/agreement.json"
fi

startup_ready() { part startup && [ -n "${TAG_LIST:-}" ] && [ -n "${THRESHOLDS:-}" ]; }
official_ready() { part official && [ -n "${OFFICIAL_REPO:-}" ]; }
checkpoint="$work/ram_plus_random.pth"
if startup_ready || official_ready; then  # 1.3 GB, in the official format
  "$py" -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; \
from compare_official import random_checkpoint; random_checkpoint(Path(sys.argv[1]))" "$checkpoint" 2>>"$log" \
    || echo "writing the full-size checkpoint FAILED (see log.txt)"
fi

if part startup; then
  if startup_ready; then
    for precision in fp32 auto fp32-unpacked; do  # the converted weights go to a cache of this run's, removed at the end
      packed=1
      [ "$precision" = fp32-unpacked ] && packed=0
      record "startup_${precision}" env RAMTAG_CACHE="$work/cache" RAMTAG_PACKED_LINEAR=$packed "$py" benchmarks/startup.py \
        --checkpoint "$checkpoint" --image "$images/synthetic_00000.jpg" --tag-list "$TAG_LIST" \
        --thresholds "$THRESHOLDS" --rounds 5 --precision "${precision%-unpacked}"
    done
  else
    echo "startup: skipped (set TAG_LIST and THRESHOLDS to the official lists)"
  fi
fi

if part official; then
  if official_ready; then
    keep official "$work/official.json" "$py" benchmarks/compare_official.py --official-repo "$OFFICIAL_REPO" \
      --official-python "${OFFICIAL_PYTHON:-$py}" --checkpoint "$checkpoint" ${TAG_LIST:+--tag-list "$TAG_LIST"} \
      --images "${PHOTOS:-$images}" --repeats "$rounds" --precisions fp32 bf16-mixed --batch-size 1 --json "$work/official.json"
  else
    echo "official: skipped (set OFFICIAL_REPO, and OFFICIAL_PYTHON where its dependencies live)"
  fi
fi

if part suite; then
  echo "== suite" >>"$log"
  if "$py" -m pytest -q -p no:cacheprovider >>"$log" 2>&1; then echo "suite: passed"; else echo "suite: FAILED (see log.txt)"; fi
  tail -n 3 "$log"
fi

"$py" - "$results" <<'PY'
import json, statistics, sys
from collections import defaultdict

entries = [json.loads(line) for line in open(sys.argv[1])]
benches, packing, other = defaultdict(list), defaultdict(list), {}
for entry in entries:
    label, result = entry["label"], entry["result"]
    if label.startswith(("bench_", "batch_")):
        benches[result["settings"]["precision"], result["settings"]["batch_size"]].append(result)
    elif label.startswith("packing_"):
        # by what the run did (settings.packed_linear), not what it was asked: off where it cannot be
        packing["packed for oneDNN" if result["settings"].get("packed_linear") else "nn.Linear"].append(result)
    else:
        other[label] = result
for layers, runs in packing.items():  # fp32, alternating rounds
    medians = {key: statistics.median(pick(run) for run in runs) for key, pick in (
        ("images/s", lambda run: run["images_per_s"]), ("backbone ms", lambda run: run["ms_per_image"]["backbone"]),
        ("head ms", lambda run: run["ms_per_image"]["head"]), ("ready s", lambda run: run["ready_s"]),
        ("peak RSS MB", lambda run: run["peak_rss_mb"]))}
    print(f"fp32, linear layers {layers}:", ", ".join(f"{key} {value:,.3f}" for key, value in medians.items()),
          "| images/s in each round", ", ".join(f"{run['images_per_s']:.3f}" for run in runs))
if len(packing) == 2:
    rate = {layers: statistics.median(run["images_per_s"] for run in runs) for layers, runs in packing.items()}
    print(f"packed / nn.Linear: {rate['packed for oneDNN'] / rate['nn.Linear']:.2f}x")
elif packing:
    print("packing: only one side ran (packing is off on this machine: not x86, or no working oneDNN)")
agreement = other.get("agreement", {})
if benches:
    print("| precision | batch | images/s | decode | backbone | head | write | peak RSS | over-threshold Jaccard with fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (precision, batch), runs in sorted(benches.items()):  # medians over the rounds
    def median(pick):
        return statistics.median(pick(run) for run in runs)
    ms = {stage: median(lambda run: run["ms_per_image"][stage]) for stage in ("decode", "backbone", "head", "write")}
    agree = agreement.get(precision) if precision != "fp32" else None  # its entry has no Jaccard
    words = (f"{agree['thresholded_jaccard']:.3f} (worst photo {agree['worst_thresholded_jaccard']:.3f})"
             if agree else ("reference" if precision == "fp32" else "-"))
    print(f"| {precision} | {batch} | {median(lambda run: run['images_per_s']):.3f} | {ms['decode']:,.1f} | {ms['backbone']:,.0f} "
          f"| {ms['head']:,.0f} | {ms['write']:.1f} | {median(lambda run: run['peak_rss_mb']):,.0f} MB | {words} |")
for (precision, batch), runs in sorted(benches.items()):
    print(f"{precision} at batch {batch}: images/s in each round", ", ".join(f"{run['images_per_s']:.3f}" for run in runs))
for label, result in other.items():
    print(label, json.dumps(result))
PY
