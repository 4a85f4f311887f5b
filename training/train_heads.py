"""Learn per-(layer, KV head) roles for kvscope-tiny: "global" (full cache) or "streaming"
(sink tokens + recent window), base model frozen.

    OMP_NUM_THREADS=1 nice -n 10 /usr/bin/python3 training/train_heads.py --method prulong --steps 300
    OMP_NUM_THREADS=1 nice -n 10 /usr/bin/python3 training/train_heads.py --method duo --steps 300

Both mix, per KV head (all query heads of its group), head output = m * full attention +
(1 - m) * streaming attention (streaming: key j visible to query i iff j is one of the
sample's first `sinks` tokens or i - j <= window, as in the runtime's decode step), on the long task files
(training/data/train-512.jsonl and train-1024.jsonl, alternating steps: 2 rows x 512, 1 x 1024).

PruLong (2506.17121): m = hard-concrete sample of log_alpha (init 4.5, beta 2/3, stretch
[-0.1, 1.1], one sample per head per step); loss = weighted next-token CE (answer tokens x5, as
train.py) + lambda1 (s - t) + lambda2 (s - t)^2, s = expected sparsity = mean over heads of
P(m = 0), t ramps 0 -> --target over the first 80% of steps, lambda1/lambda2 by gradient
ascent (Adam on the negated gradient). Deploy: global iff log_alpha >= 0 (the deterministic
gate clamp(1.2 sigmoid(log_alpha) - 0.1, 0, 1) >= 0.5). Default sinks 16, window 128.

DuoAttention (2410.10819): m = alpha in [0, 1] (init 1, clamped after each step); loss =
L2 distillation of the final hidden states (after the final norm) to the full-cache model,
mean over the hidden dimension, averaged over the answer tokens (Duo supervises the answer
positions of its synthetic retrieval data; rows without answers use every token) +
0.05 * sum |alpha| (the paper's L1 over all heads). Deploy: the k heads with the lowest alpha
become streaming, k = the number of PruLong streaming heads (from prulong.json, so the
streaming shares match) unless --streaming-heads is given. Default sinks 8, window 32:
Duo's deployment sink 64 + recent 256 scaled by the same 1/8 as PruLong's 128 + 1024 -> 16 + 128.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import learned_kv as lk  # noqa: E402
from train_gate import default_base  # noqa: E402

ROOT = os.path.dirname(HERE)
ROLES_DIR = os.path.join(ROOT, "models", "kvscope-tiny", "head-roles")
L_STRETCH, R_STRETCH, BETA = -0.1, 1.1, 2.0 / 3.0


def hard_concrete_sample(log_alpha: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / BETA)
    return (s * (R_STRETCH - L_STRETCH) + L_STRETCH).clamp(0.0, 1.0)


def hard_concrete_deterministic(log_alpha: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(log_alpha) * (R_STRETCH - L_STRETCH) + L_STRETCH).clamp(0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(m > 0) of the stretched hard-concrete gate (Louizos et al. 2018)."""
    return torch.sigmoid(log_alpha - BETA * math.log(-L_STRETCH / R_STRETCH))


def lr_sched(step, total, base, warmup=20, decay_frac=0.2):
    if step < warmup:
        return base * (step + 1) / warmup
    start = int(total * (1 - decay_frac))
    return base if step < start else base * (1 - 0.9 * (step - start) / max(1, total - start))


@torch.no_grad()
def evaluate(model, mix, sinks, window, data_dir, n_task=10, n_text=6):
    """Held-out figures for mixing weights `mix` ((layers, n_kv); None = full cache): answer CE
    and exact match on retrieval grids, CE per token on Brown text (1024-token samples)."""
    out = {}
    for task in ("passkey-1024", "niah4-1024", "vartrack-1024", "kvrecall-512"):
        path = os.path.join(data_dir, f"eval-{task}.jsonl")
        if not os.path.exists(path):
            continue
        rows = lk.load_jsonl(path)
        rows = rows[:: max(1, len(rows) // n_task)][:n_task]
        ce, em = [], []
        for s in rows:
            ids = torch.tensor(s["ids"][:-1])[None]
            T = ids.shape[1]
            logits, _ = lk.forward(model, ids, head_mix=mix,
                                   stream_allowed=lk.streaming_allowed(lk.causal_allowed(T), sinks, window))
            a = s["ans"]
            n_ans = len(s["ids"]) - 1 - a
            tgt = torch.tensor(s["ids"][a: a + n_ans])
            lg = logits[0, a - 1: a - 1 + n_ans]
            ce.append(F.cross_entropy(lg, tgt).item())
            em.append(bool((lg.argmax(-1) == tgt).all()))
        out[task] = {"answer_ce": round(sum(ce) / len(ce), 4), "exact_match": sum(em) / len(em), "n": len(em)}
    nll, n = 0.0, 0
    for s in lk.load_jsonl(os.path.join(data_dir, "eval-text-brown-1024.jsonl"))[:n_text]:
        ids = torch.tensor(s["ids"])[None]
        T = ids.shape[1] - 1
        logits, _ = lk.forward(model, ids[:, :-1], head_mix=mix,
                               stream_allowed=lk.streaming_allowed(lk.causal_allowed(T), sinks, window))
        nll += F.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
        n += T
    out["text_ce"] = round(nll / n, 4)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=("prulong", "duo"), required=True)
    ap.add_argument("--base", default=None, help="base checkpoint (default: training/runs/r3/FINAL's, else the committed one)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--sinks", type=int, default=None, help="default 16 (prulong) / 8 (duo)")
    ap.add_argument("--window", type=int, default=None, help="default 128 (prulong) / 32 (duo)")
    ap.add_argument("--target", type=float, default=0.7, help="PruLong target sparsity (share of streaming heads)")
    ap.add_argument("--ramp", type=float, default=0.8, help="PruLong: the target ramps from 0 over this share of steps")
    ap.add_argument("--lr", type=float, default=None, help="default 0.1 (prulong log_alpha) / 0.02 (duo alpha)")
    ap.add_argument("--lag-lr", type=float, default=0.05, help="PruLong: lambda1/lambda2 ascent rate")
    ap.add_argument("--reg-weight", type=float, default=0.05, help="Duo: weight of sum |alpha|")
    ap.add_argument("--distill-on", choices=("answers", "all"), default="answers")
    ap.add_argument("--streaming-heads", type=int, default=None, help="Duo deployment: heads made streaming")
    ap.add_argument("--answer-weight", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run", default=None, help="run dir under training/runs/ (default heads-<method>)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt-minutes", type=float, default=2.0)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--no-eval", action="store_true", help="stop after training and printing the roles")
    args = ap.parse_args()
    prulong = args.method == "prulong"
    sinks = args.sinks if args.sinks is not None else (16 if prulong else 8)
    window = args.window if args.window is not None else (128 if prulong else 32)
    lr = args.lr if args.lr is not None else (0.1 if prulong else 0.02)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    run_dir = os.path.join(HERE, "runs", args.run or f"heads-{args.method}")
    os.makedirs(run_dir, exist_ok=True)
    base_path = args.base or default_base()
    base_sha = lk.sha256_file(base_path)
    model = lk.load_base(base_path)
    c = model.config
    shape = (c.num_hidden_layers, c.num_key_value_heads)
    if prulong:
        param = torch.nn.Parameter(torch.full(shape, 4.5))  # log_alpha
        lag = torch.nn.Parameter(torch.zeros(2))  # lambda1, lambda2
        lag_opt = torch.optim.Adam([lag], lr=args.lag_lr)
    else:
        param = torch.nn.Parameter(torch.ones(shape))  # alpha
    # Duo: the step at which each alpha first reached 0 (args.steps + 1 = never). The L1 term
    # can drive several heads to exactly 0; deployment then ranks them by how long they
    # resisted it (the order of the regularization path), so ties at 0 are not broken arbitrarily.
    zero_step = torch.full(shape, args.steps + 1, dtype=torch.long)
    opt = torch.optim.Adam([param], lr=lr)
    step, t_used = 0, 0.0
    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        assert ck["base_sha256"] == base_sha, "checkpoint was trained on another base model"
        with torch.no_grad():
            param.copy_(ck["param"])
            if not prulong:
                zero_step.copy_(ck["zero_step"])
            if prulong:
                lag.copy_(ck["lag"])
                lag_opt.load_state_dict(ck["lag_opt"])
        opt.load_state_dict(ck["opt"])
        step, t_used = ck["step"], ck["seconds"]
        rng.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {step}", flush=True)
    print(f"{args.method}: base {base_path} (sha256 {base_sha[:12]}), sinks {sinks}, window {window}, "
          f"{args.steps} steps, lr {lr}", flush=True)

    def save():
        torch.save({"param": param.detach(), "zero_step": None if prulong else zero_step, "lag": lag.detach() if prulong else None,
                    "lag_opt": lag_opt.state_dict() if prulong else None, "opt": opt.state_dict(), "step": step,
                    "seconds": t_used, "args": vars(args), "base": base_path, "base_sha256": base_sha,
                    "py_rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    data = {512: lk.load_jsonl(os.path.join(args.data, "train-512.jsonl")),
            1024: lk.load_jsonl(os.path.join(args.data, "train-1024.jsonl"))}
    t0 = time.time() - t_used
    last_ckpt = time.time()
    hist = []
    while step < args.steps:
        cur_lr = lr_sched(step, args.steps, lr)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        row_len, rows = (512, 2) if step % 2 == 0 else (1024, 1)
        ids, tgt, w, pos, allowed = lk.make_batch(data[row_len], row_len, rows, rng, args.answer_weight)
        stream = lk.streaming_allowed(allowed, sinks, window)
        if prulong:
            mix = hard_concrete_sample(param)
            target_now = args.target * min(1.0, step / max(1, args.ramp * args.steps))
            logits, _ = lk.forward(model, ids, pos, allowed, head_mix=mix, stream_allowed=stream)
            main_loss, _ = lk.weighted_ce(logits, tgt, w)
            sparsity = 1 - prob_nonzero(param).mean()
            gap = sparsity - target_now
            loss = main_loss + lag[0] * gap + lag[1] * gap ** 2
            opt.zero_grad(set_to_none=True)
            lag_opt.zero_grad(set_to_none=True)
            loss.backward()
            lag.grad.neg_()  # gradient ascent on the multipliers
            opt.step()
            lag_opt.step()
            extra = f"sparsity {sparsity.item():.3f} (target now {target_now:.3f}) lambda {lag[0].item():+.3f} {lag[1].item():+.3f}"
        else:
            with torch.no_grad():
                h_full, _ = lk.forward(model, ids, pos, allowed, return_hidden=True)
            h_mix, _ = lk.forward(model, ids, pos, allowed, head_mix=param, stream_allowed=stream, return_hidden=True)
            sel = (w > 1.0) if args.distill_on == "answers" and (w > 1.0).any() else (w > 0)
            main_loss = (h_full - h_mix).pow(2).mean(-1)[sel].mean()
            loss = main_loss + args.reg_weight * param.abs().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                param.clamp_(0.0, 1.0)
                zero_step[(param <= 0) & (zero_step > step)] = step
            extra = f"sum|alpha| {param.abs().sum().item():.3f}"
        step += 1
        t_used = time.time() - t0
        hist.append(main_loss.item())
        if step % 10 == 0 or step == args.steps:
            vals = hard_concrete_deterministic(param) if prulong else param
            print(f"step {step}/{args.steps} {'ce' if prulong else 'distill'} {sum(hist) / len(hist):.4f} {extra} "
                  f"{'log_alpha' if prulong else 'alpha'} " +
                  " ".join("/".join(f"{v:.2f}" for v in row) for row in param.tolist()) +
                  (" gate " + " ".join("/".join(f"{v:.2f}" for v in row) for row in vals.tolist()) if prulong else "") +
                  f" lr {cur_lr:.1e} {t_used / 60:.1f} min", flush=True)
            hist = []
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    train_seconds = t_used

    # Deployment: hard roles.
    with torch.no_grad():
        if prulong:
            alpha = hard_concrete_deterministic(param)
            streaming = param < 0  # deterministic gate < 0.5
            threshold = 0.5
            achieved = streaming.float().mean().item()
            expected = (1 - prob_nonzero(param).mean()).item()
        else:
            alpha = param.detach().clone()
            k = args.streaming_heads
            pl_path = os.path.join(ROLES_DIR, "prulong.json")
            if k is None and os.path.exists(pl_path):
                k = sum(r == "streaming" for row in json.load(open(pl_path))["roles"] for r in row)
            # rank key: alpha, then (for alphas at 0) the step at which alpha reached 0
            key = alpha + zero_step.float() / (args.steps + 2) * 1e-3 * (alpha <= 0).float()
            flat = sorted(key.flatten().tolist())
            if k is None:
                threshold = 0.5
            elif k == 0:
                threshold = flat[0] - 1e-9
            elif k >= len(flat):
                threshold = flat[-1] + 1e-9
            else:
                threshold = (flat[k - 1] + flat[k]) / 2
            streaming = key < threshold
            achieved = streaming.float().mean().item()
            expected = None
    roles = [["streaming" if s else "global" for s in row] for row in streaming.tolist()]
    print(f"roles {roles} (threshold {threshold:.4f}, streaming share {achieved:.3f})", flush=True)

    if args.no_eval:
        return
    t1 = time.time()
    hard = (~streaming).float()
    ev = {"full": evaluate(model, None, sinks, window, args.data),
          "roles": evaluate(model, hard, sinks, window, args.data),
          "all_streaming": evaluate(model, torch.zeros(shape), sinks, window, args.data)}
    n_stream = int(streaming.sum().item())
    n_heads = streaming.numel()
    footprint = {str(T): round(((n_heads - n_stream) * T + n_stream * min(T, sinks + window)) / (n_heads * T), 4)
                 for T in (512, 1024, 2048)}
    print(json.dumps(ev, indent=1), f"\nKV share of full cache at T tokens (roles): {footprint}", flush=True)
    with open(os.path.join(run_dir, "eval.json"), "w") as f:
        json.dump({"eval": ev, "kv_share": footprint}, f, indent=1)
    if args.no_export:
        return
    os.makedirs(ROLES_DIR, exist_ok=True)
    out = {
        "method": args.method,
        "sinks": sinks,
        "window": window,
        "roles": roles,
        "alpha": [[round(v, 4) for v in row] for row in alpha.tolist()],
        "target_sparsity": args.target if prulong else None,
        "achieved_sparsity": round(achieved, 4),
        "steps": step,
        "base": base_sha[:16],
        "base_path": os.path.relpath(base_path, ROOT),
        "deploy_threshold": round(threshold, 4),
        "alpha_meaning": ("deterministic hard-concrete gate clamp(1.2 sigmoid(log_alpha) - 0.1, 0, 1); global iff >= 0.5"
                          if prulong else "DuoAttention mixing weight in [0, 1]; streaming iff alpha < deploy_threshold"),
        "streaming_rule": "key j visible to query i iff j < sinks or i - j <= window (decode: sinks + window cached entries plus the new token)",
        "kv_share_of_full_cache": footprint,
        "heldout": ev,
        "train_seconds": round(train_seconds),
        "eval_seconds": round(time.time() - t1),
        "seed": args.seed,
        "hardware": "CPU, 1 thread (torch.set_num_threads(1)), niced, on a 2-core machine shared with other jobs (benchmarks, probes)",
    }
    if prulong:
        out["log_alpha"] = [[round(v, 4) for v in row] for row in param.tolist()]
        out["expected_sparsity"] = round(expected, 4)
        out["lambdas"] = [round(v, 4) for v in lag.tolist()]
    else:
        out["reg_weight"] = args.reg_weight
        out["zero_step"] = zero_step.tolist()
        out["deploy_rule"] = ("the k lowest alphas become streaming (k = PruLong's streaming count); alphas at 0 "
                              "are ranked by zero_step, the step at which the L1 term drove them to 0 "
                              "(earlier = less needed); deploy_threshold is on alpha + 1e-3 * zero_step / (steps + 2) "
                              "for alphas at 0")
        out["distill_on"] = args.distill_on
    path = os.path.join(ROLES_DIR, f"{args.method}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
