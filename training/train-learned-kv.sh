#!/usr/bin/env bash
# Issue 9, PyTorch side: Attention-Gates (50% / 75% eviction), the runtime's gate reference
# fixture, PruLong and DuoAttention head roles, all on one frozen base checkpoint.
#
#   training/train-learned-kv.sh [BASE_CKPT]     (default: the checkpoint named by
#                                                 training/runs/r3/FINAL, else the committed one)
# One CPU thread, niced; logs in training/runs/{gate-50,gate-75,heads-prulong,heads-duo}/train.log.
# The fixture reads the shipped f16 model in models/kvscope-tiny/hf: export BASE_CKPT there
# first (training/export.py) so that the gates and the fixture describe the same model.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:-}"
ARGS=()
[ -n "$BASE" ] && ARGS=(--base "$BASE")
PY="nice -n 10 /usr/bin/python3"
export OMP_NUM_THREADS=1

for T in 50 75; do
  mkdir -p training/runs/gate-$T
  $PY training/train_gate.py "${ARGS[@]}" --target 0.$T --steps 240 > training/runs/gate-$T/train.log 2>&1
done
$PY training/gate_reference.py --gate models/kvscope-tiny/gates/gate-50.safetensors \
  --hf models/kvscope-tiny/hf --out test/fixtures/gate-reference-50.json
for M in prulong duo; do  # duo after prulong: Duo's deployment matches PruLong's streaming share
  mkdir -p training/runs/heads-$M
  $PY training/train_heads.py "${ARGS[@]}" --method $M --steps $([ $M = prulong ] && echo 300 || echo 120) > training/runs/heads-$M/train.log 2>&1
done
