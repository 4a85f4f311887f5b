"""Where a model's variable-tracking answers go wrong: teacher-forced argmax at each answer token of
the held-out grid (eval.py's score), grouped by what the token is: a name's first token, its second
token where no other name in the prompt starts with the same token ("unique") or one does ("shared"),
its third token, and the <|eos|> that ends the answer (not part of eval.py's exact match).

    /usr/bin/python3 training/vt_errors.py --model training/runs/m3f/ckpt.pt [--n 40]
    (--model takes an exported HF directory or a training checkpoint .pt)
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
    ap.add_argument("--data", default=os.path.join(HERE, "data", "eval-vartrack-1024.jsonl"))
    ap.add_argument("--n", type=int, default=40, help="the first n rows")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = E.load_model(args.model)
    det = E.Detok(os.path.join(HERE, "..", "models", "kvscope-tiny", "hf", "tokenizer.json"))
    var_ids = {i for i, t in det.inv.items() if t in ("\u0120VAR", "VAR")}  # " VAR" and "VAR" (byte-level BPE)
    rows = E.load_jsonl(args.data)[: args.n]
    stats, exact = {}, 0
    for r in rows:
        ids, a = r["ids"], r["ans"]
        names = {tuple(ids[i + 1:i + 4]) for i in range(a) if ids[i] in var_ids}
        _, pred = E.score(model, r, with_eos=True)
        tgt = ids[a:]
        exact += int(pred[:-1] == tgt[:-1])
        for k, (p, t) in enumerate(zip(pred, tgt)):
            if k == len(tgt) - 1:
                key = "end of answer (<|eos|>)"
            elif k % 3 == 0:
                key = "name token 1"
            else:
                j = k % 3
                name = tuple(tgt[k - j:k - j + 3])
                shared = any(n[:j] == name[:j] and n != name for n in names)
                key = f"name token {j + 1}, {'prefix shared with another name' if shared else 'unique prefix'}"
            s = stats.setdefault(key, [0, 0])
            s[0] += int(p == t)
            s[1] += 1
    for key, (h, n) in sorted(stats.items()):
        print(f"{key}: {h}/{n} = {h / n:.2f}")
    print(f"every name token right (eval.py's exact match, teacher-forced): {exact}/{len(rows)}")


if __name__ == "__main__":
    main()
