#!/usr/bin/env bash
# Train the toy GAN on a lent GPU machine in one call of the device tool and bring back what a CPU session needs:
# the ranked snapshots, the best one's EMA generator (toy-gan.safetensors + manifest entry), sample sheets and
# the training log.  From the repository root:
#     run(command="bash tools/device_gan.sh", timeout_s=590)
# Settings by environment: MINUTES of training (default 6), STEPS in all (default 30000), DATA rendered scenes
# (default 50000), RANK the last N snapshots (default 4), EVAL_N samples per ranked snapshot (default 500),
# OUT the folder to fill (the device tool sets it; default build/device_gan), CK the checkpoint folder.
# The recipe: hinge loss, spectral-normalised D with a minibatch-std channel, lazy R1 (gamma 1), EMA generator;
# bf16 autocast on the GPU; rendering on every CPU core.  Afterwards, on the CPU: copy weights/toy-gan.safetensors
# and its manifest entry into ganviz/zoo/weights, then `python -m ganviz.zoo.evaluate` and the rest of the chain
# in docs/models.md (encoder, shipped dissection, notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-build/device_gan}
CK=${CK:-/tmp/ganviz-gan}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
"$PY" -m ganviz.zoo.train gan --steps "${STEPS:-30000}" --data "${DATA:-50000}" --minutes "${MINUTES:-6}" \
    --every 1000 --keep --sample-every 2000 --r1 1 --mbstd --workers "$(nproc)" --out "$CK" 2>&1 \
    | tr '\r' '\n' | grep -v 'it/s]$\|s/it]$\|s/k]$' | tee "$OUT/train.log"
cp "$CK/gan/log.txt" "$OUT/losses.txt"
mapfile -t last < <(ls "$CK"/gan/step_*.pt | tail -n "${RANK:-4}")
"$PY" -m ganviz.zoo.evaluate --checkpoints "${last[@]}" --n-generator "${EVAL_N:-500}" | tee "$OUT/ranking.txt"
best=$(sed -n 's/^best: //p' "$OUT/ranking.txt")
"$PY" -m ganviz.zoo.train gan --export-only --snapshot "$best" --export-to "$OUT/weights" | tee -a "$OUT/ranking.txt"
last_sheet=$(ls "$CK"/gan/samples_*.png 2>/dev/null | tail -n 1)
[ -z "$last_sheet" ] || cp "$last_sheet" "$OUT/"
echo "device_gan: best snapshot $best; files in $OUT"
