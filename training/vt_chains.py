"""Variable tracking, whole answers: greedy decoding of each prompt (up to 20 tokens), the share of the tracked
chain's names found in the output (RULER's string_match_all, counted as substrings: a little looser than the
evaluation harness's scorer, which needs word boundaries and sees only as many tokens as it decodes; for the
harness's own figure through kvscope use scripts/grid-check.ts), and for the first
wrong name of each answer what it is: a name that shares the first two letters / the first letter with one of the
chains' names, another name of the tracked chain (a hop skipped or repeated), a name of the distractor chain.
With --first-name, only the first name of each answer, token by token: whether it is right, or which of its tokens
is the first wrong one. Names are three one-letter tokens (` F` `Y` `Q`), so this separates the value lookup (the
first letter) from the completion of the name (the letters after it).

    /usr/bin/python3 training/vt_chains.py MODEL [GRID] [--every 2] [--threads 1] [--first-name] [--show]
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


def first_names(model, det, rows):
    """Counts of the first name's outcome: right, or the first wrong token (and how many of those are a distractor
    chain's name)."""
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
    return kinds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("grid", nargs="?", default=os.path.join(HERE, "data", "eval-vtval-1024.jsonl"))
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--first-name", action="store_true", help="only the first name of each answer, token by token")
    ap.add_argument("--show", action="store_true", help="print each answer that is not exact, with the chains")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = E.load_model(args.model)
    model.eval()
    det = E.Detok(os.path.join(HERE, "..", "models", "kvscope-tiny", "hf", "tokenizer.json"))
    rows = E.load_jsonl(args.grid)[::args.every]
    if args.first_name:
        kinds = first_names(model, det, rows)
        print(f"{args.model}: {len(rows)} rows, first name: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
        return
    kinds = collections.Counter()
    pos_ok = [0] * 4
    names_share = exact = 0.0
    for i, r in enumerate(rows):
        out = det(E.greedy(model, r["ids"][:r["ans"]], max_new=20))
        tracked, distractor = r["meta"]["chains"][0]["names"], r["meta"]["chains"][1]["names"]
        names_share += sum(n in out for n in tracked) / len(tracked)
        exact += out.strip() == " ".join(tracked)
        if args.show and out.strip() != " ".join(tracked):
            print(f"  row {i * args.every}: wanted {' '.join(tracked)} | got {out.strip()!r} | distractor "
                  f"{' '.join(distractor)}", flush=True)
        for k, n in enumerate(out.split()[:4]):
            if n == tracked[k]:
                pos_ok[k] += 1
                continue
            if n in tracked:
                c = f"tracked chain's name {tracked.index(n) + 1}"
            elif n in distractor:
                c = f"distractor chain's name {distractor.index(n) + 1}"
            elif any(n[:2] == t[:2] for t in tracked + distractor):
                c = "shares the first two letters"
            elif any(n[:1] == t[:1] for t in tracked + distractor):
                c = "shares the first letter"
            else:
                c = "other"
            kinds[(k + 1, c)] += 1
            break
    n = len(rows)
    print(f"{args.model}: {n} rows, exact {exact / n:.1%}, names (string_match_all) {names_share / n:.1%}, "
          f"right by position {' / '.join(f'{p / n:.0%}' for p in pos_ok)}")
    for (k, c), v in sorted(kinds.items()):
        print(f"  first wrong name at position {k}: {c}: {v}")


if __name__ == "__main__":
    main()
