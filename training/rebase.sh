#!/usr/bin/env bash
# Ship a new base model: everything derived from the bundled model's weights, in order.
#
#   training/rebase.sh training/runs/<run>/ckpt.pt      (a train.py checkpoint)
#
# 1. slim checkpoint -> training/checkpoints/kvscope-tiny.pt, export both layouts -> models/kvscope-tiny
# 2. PyTorch figures on the exported f16 weights -> training/eval-results.json (full grids)
# 3. learned cache policies on the new base: gates, the gate fixture, PruLong / Duo roles
#    (training/train-learned-kv.sh), and the KVSharer maps (scripts/calibrate-sharing.ts)
# 4. kvscope vs PyTorch greedy answers on every 10th prompt of each grid (scripts/grid-check.ts), and held-out
#    Brown bits per byte through kvscope next to PyTorch's (scripts/bpb.ts)
# Logs and intermediate files in training/runs/rebase/. Step 3's training alone was ~24 min on one free
# CPU thread when the shipped gates and roles were made; the whole script is about an hour on 2 cores.
# What it does not redo (hours on SwiftShader): the
# evaluation sweeps of e2e/eval/README.md (quick.json, learned.json) and the figures written into
# the READMEs; their commands are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT="${1:?usage: training/rebase.sh RUN_CKPT}"
PY=/usr/bin/python3
LOG=training/runs/rebase
mkdir -p "$LOG"
export OMP_NUM_THREADS=1
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/lib/chromium/vk_swiftshader_icd.json}"
step() { echo "[$(date +%H:%M:%S)] $*"; }

step "1/4 slim + export"
$PY training/slim_ckpt.py "$CKPT" training/checkpoints/kvscope-tiny.pt
$PY training/export.py --ckpt training/checkpoints/kvscope-tiny.pt --out models/kvscope-tiny > "$LOG/export.log"
sha256sum training/checkpoints/kvscope-tiny.pt

step "2/4 PyTorch figures (full grids) -> training/eval-results.json"
$PY training/eval.py --hf models/kvscope-tiny/hf --threads 1 --json training/eval-results.json > "$LOG/eval.log" 2>&1 &
EVAL=$!

step "3/4 learned cache policies (gates, fixture, head roles), then the sharing maps"
training/train-learned-kv.sh training/checkpoints/kvscope-tiny.pt
npx vite-node scripts/calibrate-sharing.ts > "$LOG/calibrate-sharing.log" 2>&1
wait $EVAL
grep -E "%|bits per byte" "$LOG/eval.log" || true

step "4/4 kvscope vs PyTorch, every 10th prompt of each grid; held-out Brown bits per byte"
$PY training/eval.py --hf models/kvscope-tiny/hf --threads 2 --every 10 --tasks-only --greedy-out "$LOG/greedy10.json" > "$LOG/greedy10.log" 2>&1
npx vite-node scripts/grid-check.ts -- --greedy "$LOG/greedy10.json" --out "$LOG/grid-check.json" | tee "$LOG/grid-check.log"
npx vite-node scripts/bpb.ts -- --out "$LOG/bpb.json" 2>"$LOG/bpb.err" | tee "$LOG/bpb.log"

step "done. Still to redo by hand (SwiftShader hours; resumable, shardable):"
cat <<'EOF'
  npm run eval -- --spec e2e/eval/quick.json --shard i/4 --out eval-results/quick-node.jsonl      (i = 1..4)
    (or all at once on lavapipe, ~18 min on 2 cores instead of ~88:
     VK_ICD_FILENAMES=$(bash scripts/lavapipe.sh) npm run eval -- --spec e2e/eval/quick.json --out eval-results/quick-node.jsonl)
  npm run eval -- --spec e2e/eval/quick.json --backend browser --shard i/4 --subset 10 --out eval-results/quick-browser.jsonl
  npx vite-node e2e/eval/compare.ts -- eval-results/quick-node.jsonl eval-results/quick-browser.jsonl
  npm run eval -- --spec e2e/eval/learned.json --out eval-results/learned-node.jsonl
  then the figures in training/README.md, e2e/eval/README.md, README.md and the test suite (bash .ci/run)
EOF
