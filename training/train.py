"""Train kvscope-tiny on CPU (or CUDA when present): synthetic recall tasks + plain text.

    nice -n 10 /usr/bin/python3 training/train.py --run main            # fresh run
    nice -n 10 /usr/bin/python3 training/train.py --run main --resume   # continue from ckpt.pt
    /usr/bin/python3 training/train.py --run next --init training/checkpoints/kvscope-tiny.pt  # from the committed weights

Recipe (what makes retrieval emerge within a CPU budget):
  * most of every batch is recall tasks (kv recall, passkey, NIAH, variable tracking, copy,
    recurrence) from the first step, 20% plain English text (see gen-data.ts's mix);
  * a share (--p-repeat) of samples are a random token segment repeated once, the second
    copy weighted like an answer: the densest signal for induction heads, which all the
    retrieval tasks need;
  * answer tokens weigh --answer-weight (default 5) times a normal token in the loss;
  * short-to-long curriculum: rows of 128, 256, 512 (and 1024) tokens, each row packed with
    whole samples and a block-diagonal causal mask;
  * skipped positions (PoSE): for half of the samples the position ids jump by a random gap
    at a random point, so RoPE sees the distances of a 2048-token context while rows stay
    short. (A first attempt with fully random sorted position subsets, Ruoss et al. 2023,
    kept induction heads from forming in 400 steps: neighbours were no longer 1 apart.)
  * a quick held-out retrieval check every --eval-every steps (teacher-forced greedy exact
    match, which equals greedy decoding's exact match), keeping the best checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Llama, LlamaConfig  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PAD = 2  # <|pad|>
WEIGHT_DECAY = 0.1  # AdamW, matrices only
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def parse_stages(spec: str):
    """'128:300:16:1.0:0:2e-3,256:700:16' -> [(row_len, steps, rows_per_batch, p_repeat, p_skip, lr), ...].
    Optional fields override, for that stage, --p-repeat (1.0 = only repeated random segments:
    the induction-head bootstrap stage), --p-skip-pos and --lr (None = the flag)."""
    out = []
    for part in spec.split(","):
        f = part.split(":")
        out.append((int(f[0]), int(f[1]), int(f[2]), float(f[3]) if len(f) > 3 else None,
                    float(f[4]) if len(f) > 4 else None, float(f[5]) if len(f) > 5 else None))
    return out


def sample_positions(n: int, max_pos: int, rng: random.Random, p_skip: float):
    """Position ids for one sample: 0..n-1, or with probability p_skip PoSE-style skipped
    positions (Zhu et al. 2023): two contiguous chunks with a random gap between them, so
    neighbouring tokens stay 1 apart (what previous-token / induction heads rely on) while
    the distances across the gap cover the whole max_pos context."""
    if n < 2 or n >= max_pos or rng.random() >= p_skip:
        return list(range(n))
    cut = rng.randint(1, n - 1)
    gap = rng.randint(0, max_pos - n)
    return list(range(cut)) + list(range(cut + gap, n + gap))


def repeat_sample(rng: random.Random, row_len: int, vocab: int = 4096, first: int = 6, whole_row: bool = False):
    """A random token segment followed by its repeat: every token of the second copy is
    predictable only by looking back (the canonical task on which induction heads form).
    whole_row: one segment fills the row (the bootstrap stage; short segments give fewer
    predictable tokens per row)."""
    half = row_len // 2 if whole_row else rng.randint(4, max(4, row_len // 2 - 1))
    seg = [rng.randrange(first, vocab) for _ in range(half)]
    return {"task": "repeat", "ids": [0] + seg + seg, "ans": 1 + half}


def make_batch(samples, row_len, rows, rng, answer_weight, max_pos, p_random, p_repeat=0.0):
    """Pack whole samples into `rows` rows of `row_len` tokens. Returns ids, targets, weights,
    positions and a (rows, 1, T, T) additive mask (causal within each sample)."""
    ids = torch.full((rows, row_len), PAD, dtype=torch.long)
    tgt = torch.full((rows, row_len), PAD, dtype=torch.long)
    w = torch.zeros(rows, row_len)
    pos = torch.zeros(rows, row_len, dtype=torch.long)
    seg = torch.full((rows, row_len), -1, dtype=torch.long)
    rep = torch.zeros(rows, row_len, dtype=torch.bool)  # answer tokens of repeat samples (for the log)
    for r in range(rows):
        fill, k = 0, 0
        while fill < row_len:
            s = repeat_sample(rng, row_len, whole_row=p_repeat >= 1.0) if rng.random() < p_repeat else rng.choice(samples)
            x = s["ids"][: row_len + 1]
            n = len(x) - 1
            if n < 2:
                continue
            if fill + n > row_len:
                if fill > 0:
                    break  # row full enough: leave the tail as padding
                n = row_len
                x = x[: n + 1]
            sl = slice(fill, fill + n)
            ids[r, sl] = torch.tensor(x[:-1])
            tgt[r, sl] = torch.tensor(x[1:])
            ww = torch.ones(n)
            a = s["ans"]  # first answer token is x[a]: predicted at input index a-1
            if s["task"] != "text":
                ww[max(0, a - 1):] = answer_weight
            w[r, sl] = ww
            if s["task"] == "repeat":
                rep[r, fill + max(0, a - 1): fill + n] = True
            pos[r, sl] = torch.tensor(sample_positions(n, max_pos, rng, p_random))
            seg[r, sl] = k
            fill += n
            k += 1
    i = torch.arange(row_len)
    allowed = (seg[:, :, None] == seg[:, None, :]) & (i[None, :, None] >= i[None, None, :])
    allowed = allowed | torch.eye(row_len, dtype=torch.bool)[None]  # padding rows attend to themselves
    mask = torch.zeros(rows, 1, row_len, row_len).masked_fill(~allowed[:, None], float("-inf"))
    return ids, tgt, w, pos, mask, rep


@torch.no_grad()
def exact_match(model, samples, window=None, sinks=0):
    """Teacher-forced greedy check: every answer token (not the trailing <|eos|>) must be the
    argmax given the prompt and the previous answer tokens. Equivalent to greedy decoding."""
    model.eval()
    hits = []
    for s in samples:
        ids = torch.tensor(s["ids"][:-1], device=DEVICE)[None]
        logits = model(ids, window=window, sinks=sinks)[0].cpu()
        a = s["ans"]
        n_ans = len(s["ids"]) - 1 - a  # answer tokens without <|eos|>
        pred = logits[a - 1: a - 1 + n_ans].argmax(-1)
        hits.append(bool((pred == torch.tensor(s["ids"][a: a + n_ans])).all()))
    model.train()
    return sum(hits) / max(1, len(hits))


def lr_at(step, total, base, warmup, decay_frac):
    """Warmup, constant, then linear decay to 10% over the last `decay_frac` of steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    start = int(total * (1 - decay_frac))
    if step < start:
        return base
    return base * (1 - 0.9 * (step - start) / max(1, total - start))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="main")
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--stages", default="128:800:16,256:800:8,512:700:4")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay-frac", type=float, default=0.2)
    ap.add_argument("--answer-weight", type=float, default=5.0)
    ap.add_argument("--max-pos", type=int, default=2048)
    ap.add_argument("--p-repeat", type=float, default=0.25, help="share of samples that are a repeated random segment")
    ap.add_argument("--p-skip-pos", type=float, default=0.5)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-sets", default="passkey-512:8,kvrecall-512:8,passkey-1024:4",
                    help="held-out grids (training/data/eval-NAME.jsonl) and samples used by the quick check")
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; on 2 shared cores 1 thread ran a 16x128 step in 0.63 s, 2 threads in 1.16 s")
    ap.add_argument("--resume", action="store_true", help="continue from runs/<run>/ckpt.pt (with optimizer state)")
    ap.add_argument("--init", default=None, help="start from a slim checkpoint's weights and step instead")
    ap.add_argument("--restart-schedule", action="store_true",
                    help="with --init: keep the weights but run the stages and lr schedule from step 0")
    ap.add_argument("--config", default="{}", help="JSON overrides of LlamaConfig (default: the --init checkpoint's)")
    ap.add_argument("--pin-steps", type=int, default=0, help="hold a mech_init checkpoint's hand-set entries this many steps")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "runs"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    run_dir = os.path.join(args.out_dir, args.run)
    os.makedirs(run_dir, exist_ok=True)
    stages = parse_stages(args.stages)
    total = sum(s[1] for s in stages)

    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    resume_ck = torch.load(ckpt_path, map_location=DEVICE) if args.resume and os.path.exists(ckpt_path) else None
    # --init is read on resume too: its "pin" masks stay in force for the whole run
    init_ck = torch.load(args.init, map_location=DEVICE) if args.init else None
    # the model config: the resumed checkpoint's, else the --init checkpoint's, then --config on top
    src_ck = resume_ck if resume_ck is not None else init_ck
    cfg_dict = dict(src_ck["config"]) if src_ck is not None and "config" in src_ck else {}
    cfg_dict.update(json.loads(args.config))
    cfg = LlamaConfig(**cfg_dict)
    model = Llama(cfg).to(DEVICE)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    step, best, t_used = 0, -1.0, 0.0
    if resume_ck is not None:
        ck = resume_ck
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, best, t_used = ck["step"], ck["best"], ck.get("seconds", 0.0)
        rng.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"].cpu())
        print(f"resumed at step {step} (best {best:.3f}, {t_used/60:.1f} min so far)", flush=True)
    elif args.init:
        # A slim committed checkpoint (training/checkpoints/*.pt) or a mech_init.py checkpoint:
        # weights and step, fresh optimizer.
        ck = init_ck
        model.load_state_dict(ck["model"])
        step, t_used = ck["step"], ck.get("seconds", 0.0)
        if args.restart_schedule:
            print(f"initialised from {args.init} (trained {step} steps, {t_used/60:.1f} min); schedule restarts at step 0",
                  flush=True)
            step, t_used = 0, 0.0
        else:
            print(f"initialised from {args.init} at step {step} (optimizer state not kept)", flush=True)
    print(f"params {model.num_params():,}  config {json.dumps(cfg.to_dict())}", flush=True)

    # Hand-set entries of a mech_init.py checkpoint ("pin" masks): held at their initial values
    # for the first --pin-steps steps, and never weight-decayed (the decoupled decay is undone
    # on them after each step), so the copy circuit is not shrunk away while the rest learns.
    pins = []
    if init_ck is not None and init_ck.get("pin"):
        params = dict(model.named_parameters())
        init_sd = init_ck["model"]
        for name, m in init_ck["pin"].items():
            pins.append((params[name], m.to(DEVICE), init_sd[name].to(DEVICE).clone()))
        print(f"pinned entries: {sum(int(m.sum()) for _, m, _ in pins):,} in {len(pins)} tensors, "
              f"held for {args.pin_steps} steps, never decayed", flush=True)

    eval_sets = {}

    def load_eval_sets():
        # Loaded lazily: the evaluation grids may still be being generated when training starts.
        for part in args.eval_sets.split(","):
            name, k = part.split(":")[0], int(part.split(":")[1])
            path = os.path.join(args.data, f"eval-{name}.jsonl")
            if name not in eval_sets and os.path.exists(path):
                rows = load_jsonl(path)
                if len(rows) >= 100:
                    eval_sets[name] = rows[:: len(rows) // k][:k]

    def save(path, extra=None):
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                    "seconds": t_used, "config": cfg.to_dict(), "args": vars(args),
                    "py_rng": rng.getstate(), "torch_rng": torch.get_rng_state(), **(extra or {})}, path + ".tmp")
        os.replace(path + ".tmp", path)

    data_cache = {}
    last_ckpt = time.time()
    t0 = time.time() - t_used
    done = 0
    for row_len, steps, rows, p_rep, p_skip, stage_lr in stages:
        p_rep = args.p_repeat if p_rep is None else p_rep
        p_skip = args.p_skip_pos if p_skip is None else p_skip
        if step >= done + steps:
            done += steps
            continue
        path = os.path.join(args.data, f"train-{row_len}.jsonl")
        if p_rep >= 1.0:
            samples = []  # only repeated random segments: no data file needed
        elif path not in data_cache:
            data_cache.clear()
            data_cache[path] = load_jsonl(path)
        if p_rep < 1.0:
            samples = data_cache[path]
        while step < done + steps:
            lr = lr_at(step, total, stage_lr or args.lr, args.warmup, args.decay_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            ids, tgt, w, pos, mask, rep = make_batch(samples, row_len, rows, rng, args.answer_weight,
                                                     args.max_pos, p_skip, p_rep)
            ids, tgt, w, pos, mask = (t.to(DEVICE) for t in (ids, tgt, w, pos, mask))
            logits = model(ids, positions=pos, mask=mask)
            ce = F.cross_entropy(logits.view(-1, cfg.vocab_size), tgt.view(-1), reduction="none")
            loss = (ce * w.view(-1)).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if pins:
                with torch.no_grad():
                    for p, m, v in pins:
                        if step < args.pin_steps:
                            p[m] = v[m]
                        elif p.dim() >= 2:  # the weight-decayed group
                            p[m] /= (1 - lr * WEIGHT_DECAY)
            step += 1
            t_used = time.time() - t0
            if step % 10 == 0:
                text = w == 1.0
                ans = (w > 1.0) & ~rep.to(w.device)
                lt = (ce.view(w.shape)[text].mean().item() if text.any() else float("nan"))
                la = (ce.view(w.shape)[ans].mean().item() if ans.any() else float("nan"))
                lr_ = (ce.view(w.shape)[rep.to(w.device)].mean().item() if rep.any() else float("nan"))
                print(f"step {step}/{total} T={row_len} loss {loss.item():.3f} (plain-token {lt:.3f}, answer {la:.3f}, "
                      f"repeat {lr_:.3f}) "
                      f"gnorm {gnorm:.2f} lr {lr:.2e} {t_used/60:.1f} min", flush=True)
            if step % args.eval_every == 0 or step == total:
                load_eval_sets()
                scores = {k: exact_match(model, v) for k, v in eval_sets.items()}
                score = sum(scores.values()) / max(1, len(scores))
                print(f"eval step {step}: " + " ".join(f"{k} {v:.2f}" for k, v in scores.items()) +
                      f" mean {score:.3f}", flush=True)
                if score >= best:
                    best = score
                    save(os.path.join(run_dir, "best.pt"), {"eval": scores})
                    print(f"  new best {best:.3f} -> best.pt", flush=True)
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save(ckpt_path)
                last_ckpt = time.time()
        done += steps
    save(ckpt_path)
    print(f"done: {step} steps in {t_used/60:.1f} min, best eval {best:.3f}", flush=True)


if __name__ == "__main__":
    main()
