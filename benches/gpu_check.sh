#!/usr/bin/env bash
# GPU figures of issue 19, rerunnable unchanged on any machine with an NVIDIA GPU (CUDA) or, with
# FEATURE=gpu DEVICE=wgpu, any Vulkan/Metal/DX12 GPU. Prints JSON lines to stdout and writes them to
# $OUT (default ./gpu_check) as well:
#   1. build with the GPU feature;
#   2. `bench infer --device $DEVICE` (batched inference, base-32 U-Net at 128 x 128);
#   3. `bench train --device $DEVICE` (one G + D step of the small, base-32 and paper networks);
#   4. one cross-validation fold of the small network at the paper's schedule (25 epochs) on a
#      6-subject analytic population (no FDTD: `synth` subjects), so the wall time of a fold on the
#      GPU can be set beside the CPU's (README, Performance).
# Usage: benches/gpu_check.sh            (CUDA, device cuda:0)
#        FEATURE=gpu DEVICE=wgpu benches/gpu_check.sh
set -euo pipefail
FEATURE=${FEATURE:-cuda}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>/dev/null || true
t0=$(date +%s)
cargo build --release --features "$FEATURE" 2>&1 | tail -2
echo "{\"build_s\": $(( $(date +%s) - t0 )), \"feature\": \"$FEATURE\"}" | tee "$OUT/build.json"
b=./target/release/b1sar
$b bench infer --device "$DEVICE" --json | tee "$OUT/infer.json"
$b bench train --device "$DEVICE" --json | tee "$OUT/train.json"
work=$(mktemp -d)
fields=()
for k in 0 1 2 3 4 5; do
  $b synth --shape 24,48,48 --spacing-mm 10 --seed $((k + 1)) --out "$work/f$k.npz" > /dev/null
  fields+=("$work/f$k.npz")
done
$b dataset --fields "${fields[@]}" --out "$work/ds" --drives 250 --size 48,48 --val-slices 10 \
  --val-drives 50 > /dev/null
t0=$(date +%s)
$b cv --data "$work/ds" --fields "${fields[@]}" --out "$work/cv" --folds 5 --fold 0 --epochs 25 \
  --device "$DEVICE" --json > "$OUT/fold.json"
echo "{\"fold_wall_s\": $(( $(date +%s) - t0 )), \"device\": \"$DEVICE\"}" | tee "$OUT/fold_time.json"
