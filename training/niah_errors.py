"""Where a model's multi-key NIAH answers go wrong: teacher-forced argmax on each answer token of a
grid (the same test as eval.py's exact match), then per wrong row which digits are wrong and whether
the wrong digit is the one another needle has at that place.

    /usr/bin/python3 training/niah_errors.py --model models/kvscope-tiny/hf --data training/data/eval-niah4-1024.jsonl
    (--model also takes a training checkpoint .pt; --every k scores every k-th row)
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import eval as E  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(HERE, "..", "models", "kvscope-tiny", "hf"))
    ap.add_argument("--data", default=os.path.join(HERE, "data", "eval-niah4-1024.jsonl"))
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="only the summary line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = E.load_model(args.model)
    det = E.Detok(os.path.join(HERE, "..", "models", "kvscope-tiny", "hf", "tokenizer.json"))
    rows = E.load_jsonl(args.data)[:: args.every]
    ok, wrong_at, borrowed = 0, {}, 0
    for i, s in enumerate(rows):
        good, pred = E.score(model, s)
        ok += good
        if good:
            continue
        want = det(s["ids"][s["ans"]:]).replace("<|eos|>", "").strip()
        got = det(pred).replace("<|eos|>", "").strip()
        places = [k for k, (a, b) in enumerate(zip(want, got)) if a != b]
        others = [v for j, v in enumerate(s["meta"]["values"]) if j != s["meta"]["target"]]
        from_other = bool(places) and all(any(len(v) > k and v[k] == got[k] for v in others) for k in places)
        borrowed += from_other
        key = ",".join(str(k + 1) for k in places) or "end"
        wrong_at[key] = wrong_at.get(key, 0) + 1
        if not args.quiet:
            print(f"row {i * args.every}: depth {s['meta']['depth']:.2f} want {want} got {got} "
                  f"(digit {key} wrong{', as in another needle' if from_other else ''}) values {s['meta']['values']}")
    print(f"{ok}/{len(rows)} right; wrong rows by wrong digit place(s): "
          + ", ".join(f"{k}: {v}" for k, v in sorted(wrong_at.items())) + f"; wrong digits all found in another needle: {borrowed}")


if __name__ == "__main__":
    main()
