"""Variable tracking, the first name of each answer token by token: greedy decoding of the first name's tokens only,
then whether the whole name is right, or which of its tokens is the first wrong one.
Names are three one-letter tokens (` F` `Y` `Q`), so this separates the value lookup (the first letter) from the
completion of the name (the letters after it).

    /usr/bin/python3 training/vt_first_name.py MODEL [GRID] [--threads 2]
    (MODEL: an exported HF directory or a checkpoint .pt; GRID: default training/data/eval-vtval-1024.jsonl)
"""
import argparse
import collections
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import eval as E  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("grid", nargs="?", default=os.path.join(HERE, "data", "eval-vtval-1024.jsonl"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = E.load_model(args.model)
    model.eval()
    det = E.Detok(os.path.join(HERE, "..", "models", "kvscope-tiny", "hf", "tokenizer.json"))
    rows = E.load_jsonl(args.grid)
    kinds = collections.Counter()
    for r in rows:
        want = r["ids"][r["ans"]:]
        first = [want[0]]  # the first name's tokens: up to the next token that starts with a space
        for t in want[1:]:
            if det([t]).startswith(" "):
                break
            first.append(t)
        got = E.greedy(model, r["ids"][:r["ans"]], max_new=len(first))
        if got[:len(first)] == first:
            kinds["right"] += 1
            continue
        k = next(i for i, (a, b) in enumerate(zip(got, first)) if a != b)
        kind = "first token wrong" if k == 0 else f"first token right, token {k + 1} wrong"
        kinds[kind] += 1
        if det(got).strip() in r["meta"]["chains"][1]["names"]:
            kinds[kind + " (a distractor chain's name)"] += 1
    print(f"{args.model}: {len(rows)} rows, first name: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))


if __name__ == "__main__":
    main()
