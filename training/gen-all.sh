#!/bin/sh
# Generate the training curriculum and the evaluation grids (see training/README.md).
set -e
cd "$(dirname "$0")/.."
G="npx vite-node training/gen-data.ts --"
D=${DATA_DIR:-training/data}
# `gen-all.sh eval` regenerates only the evaluation grids.
if [ "$1" != "eval" ]; then
$G --out $D/train-128.jsonl  --seed 1 --n 36000 --min-tokens 48  --max-tokens 128
$G --out $D/train-256.jsonl  --seed 2 --n 20000 --min-tokens 96  --max-tokens 256
$G --out $D/train-512.jsonl  --seed 3 --n 10000 --min-tokens 192 --max-tokens 512
$G --out $D/train-1024.jsonl --seed 4 --n 4000  --min-tokens 384 --max-tokens 1024
fi
# Held-out evaluation grids: held-out corpus documents as haystack, seeds unused by training.
for T in 128 256 512 1024 2048; do
  $G --out $D/eval-passkey-$T.jsonl --task passkey --tokens $T --depths 10 --per-depth 10 --split heldout --seed 100$T
done
$G --out $D/eval-niah4-1024.jsonl --task niah --tokens 1024 --depths 10 --per-depth 10 --split heldout --seed 2001 --opts '{"keys":4}'
$G --out $D/eval-vartrack-1024.jsonl --task vartrack --tokens 1024 --depths 10 --per-depth 10 --split heldout --seed 2002 --opts '{"hops":4,"distractors":1}'
$G --out $D/eval-kvrecall-128.jsonl --task kvrecall --tokens 128 --depths 10 --per-depth 10 --split heldout --seed 2007
$G --out $D/eval-kvrecall-512.jsonl --task kvrecall --tokens 512 --depths 10 --per-depth 10 --split heldout --seed 2003
$G --out $D/eval-passkey-chat-1024.jsonl --task passkey --fmt chat --tokens 1024 --depths 10 --per-depth 5 --split heldout --seed 2004
$G --out $D/eval-niah4-chat-1024.jsonl --task niah --fmt chat --tokens 1024 --depths 10 --per-depth 5 --split heldout --seed 2008 --opts '{"keys":4}'
$G --out $D/eval-passkey-brown-1024.jsonl --task passkey --filler brown --tokens 1024 --depths 10 --per-depth 5 --split heldout --seed 2005
$G --out $D/eval-text-brown-1024.jsonl --task text --filler brown --tokens 1024 --n 40 --split heldout --seed 2006
# Validation grids for choosing among training runs (not the reported figures): 4-key NIAH as the test
# grid with another seed, and with all four values sharing their first digit (training/README.md, eighth session).
$G --out $D/eval-niah4val-1024.jsonl --task niah --tokens 1024 --depths 10 --per-depth 10 --split heldout --seed 3002 --opts '{"keys":4}'
$G --out $D/eval-vtval-1024.jsonl --task vartrack --tokens 1024 --depths 10 --per-depth 10 --split heldout --seed 3003 --opts '{"hops":4,"distractors":1}'
$G --out $D/eval-hnval-1024.jsonl --task niah --tokens 1024 --depths 10 --per-depth 10 --split heldout --seed 3014 --opts '{"keys":4,"sharedPrefix":1}'
