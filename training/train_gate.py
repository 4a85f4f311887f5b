"""Train Attention-Gates for kvscope-tiny (base model frozen) and export them.

    OMP_NUM_THREADS=1 nice -n 10 /usr/bin/python3 training/train_gate.py --target 0.5 --steps 300
    ... --target 0.75 ...                     # writes models/kvscope-tiny/gates/gate-75.safetensors

The gate design (shapes, semantics) is in learned_kv.py and training/README.md. Training:
  * data: the training mix of training/data/train-<row-len>.jsonl (plain text + recall tasks,
    answer tokens x --answer-weight in the loss, as train.py), rows packed with whole samples,
    natural positions;
  * forward: hard keep mask (z >= 0) in every layer, chunk C = 1 (a key is visible to later
    queries only if kept); backward: straight-through through sigmoid(z) (learned_kv._gated_probs);
  * loss = weighted next-token CE + lambda * (keep - (1 - target_now))^2, keep = mean over
    (token, KV head) of the straight-through keep flag of every token except each sample's
    first (forward value: the hard keep rate, gradient: through sigmoid), target_now ramps
    linearly from 0 to --target eviction over the first --ramp of the steps;
  * Adam on the 51,336 gate parameters (lr warm-up 20 steps, constant, linear decay to 10%
    over the last 20%).
At the end: held-out evaluation (training/data/eval-text-brown-1024.jsonl, 512-token slices;
eval-passkey-512 / eval-kvrecall-512 answers), f32 safetensors export and an entry in
models/kvscope-tiny/gates/gates.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import learned_kv as lk  # noqa: E402

ROOT = os.path.dirname(HERE)
GATES_DIR = os.path.join(ROOT, "models", "kvscope-tiny", "gates")


def default_base() -> str:
    """The final base checkpoint once training/runs/r3/FINAL names it, else the committed one."""
    final = os.path.join(HERE, "runs", "r3", "FINAL")
    if os.path.exists(final):
        p = open(final).read().strip()
        return p if os.path.isabs(p) else os.path.join(ROOT, p)
    return os.path.join(HERE, "checkpoints", "kvscope-tiny.pt")


def lr_at(step, total, base, warmup=20, decay_frac=0.2):
    if step < warmup:
        return base * (step + 1) / warmup
    start = int(total * (1 - decay_frac))
    return base if step < start else base * (1 - 0.9 * (step - start) / max(1, total - start))


def keep_stats(zs, valid):
    """zs: per-layer (B, T, n_kv) logits; valid: (B, T) tokens that count (not a sample's first,
    not padding). Returns (overall keep rate, [[rate per KV head] per layer]) of the hard flags."""
    per = [[((z[..., h] >= 0) & valid).sum().item() / max(1, valid.sum().item()) for h in range(z.shape[-1])]
           for z in zs]
    flat = [r for layer in per for r in layer]
    return sum(flat) / len(flat), per


class RandomGate(torch.nn.Module):
    """Evicts each (token, KV head) with a fixed probability (the first token is kept)."""

    def __init__(self, evict: torch.Tensor, seed: int):
        super().__init__()
        self.evict, self.gen = evict, torch.Generator().manual_seed(1000 + seed)

    def forward(self, n1, allowed):
        B, T, _ = n1.shape
        u = torch.rand(B, T, self.evict.numel(), generator=self.gen)
        z = torch.where(u < self.evict, -1.0, 1.0)
        z[:, 0] = 1.0
        return z


@torch.no_grad()
def evaluate(model, gates, data_dir, n_text=8, text_len=512, n_task=10):
    """Held-out figures: CE per token on Brown text slices (full cache / gates at C = 1 /
    gates at C = 64), eviction rates, answer CE and exact match on two retrieval grids."""
    out = {}
    text = lk.load_jsonl(os.path.join(data_dir, "eval-text-brown-1024.jsonl"))[:n_text]
    for name, g, chunk in (("full", None, 1), ("gate_c1", gates, 1), ("gate_c64", gates, 64)):
        nll, n, keeps, per_acc, first_keep = 0.0, 0, [], None, 0.0
        for s in text:
            ids = torch.tensor(s["ids"][: text_len + 1])[None]
            logits, zs = lk.forward(model, ids[:, :-1], gates=g, chunk=chunk)
            nll += torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
            n += ids.shape[1] - 1
            if g is not None:
                valid = torch.ones(1, text_len, dtype=torch.bool)
                valid[:, 0] = False
                k, per = keep_stats(zs, valid)
                keeps.append(k)
                first_keep += torch.stack([(z[0, 0] >= 0).float().mean() for z in zs]).mean().item()
                per_acc = per if per_acc is None else [[a + b for a, b in zip(x, y)] for x, y in zip(per_acc, per)]
        rec = {"ce": nll / n, "tokens": n}
        if g is not None:
            rec["first_token_keep"] = first_keep / len(text)
            rec["evict_rate"] = 1 - sum(keeps) / len(keeps)
            rec["evict_rate_per_layer_head"] = [[round(1 - v / len(text), 4) for v in layer] for layer in per_acc]
        out[f"text_{name}"] = rec
    # Sanity baseline: random eviction at the gate's own per-(layer, KV head) rate (C = 1).
    rates = out["text_gate_c1"]["evict_rate_per_layer_head"]
    rand_gates = torch.nn.ModuleList([RandomGate(torch.tensor(r), seed=l) for l, r in enumerate(rates)])
    nll, n = 0.0, 0
    for s in text:
        ids = torch.tensor(s["ids"][: text_len + 1])[None]
        logits, _ = lk.forward(model, ids[:, :-1], gates=rand_gates, chunk=1)
        nll += torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
        n += ids.shape[1] - 1
    out["text_random_same_rate"] = {"ce": nll / n, "tokens": n}
    for task in ("passkey-512", "kvrecall-512"):
        path = os.path.join(data_dir, f"eval-{task}.jsonl")
        if not os.path.exists(path):
            continue
        rows = lk.load_jsonl(path)
        rows = rows[:: max(1, len(rows) // n_task)][:n_task]
        for name, g in (("full", None), ("gate_c1", gates)):
            ce, em = [], []
            for s in rows:
                ids = torch.tensor(s["ids"][:-1])[None]
                logits, _ = lk.forward(model, ids, gates=g, chunk=1)
                a = s["ans"]
                n_ans = len(s["ids"]) - 1 - a
                tgt = torch.tensor(s["ids"][a: a + n_ans])
                lg = logits[0, a - 1: a - 1 + n_ans]
                ce.append(torch.nn.functional.cross_entropy(lg, tgt).item())
                em.append(bool((lg.argmax(-1) == tgt).all()))
            out[f"{task}_{name}"] = {"answer_ce": sum(ce) / len(ce), "exact_match": sum(em) / len(em), "n": len(em)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=None, help="base checkpoint (default: training/runs/r3/FINAL's, else the committed one)")
    ap.add_argument("--target", type=float, default=0.5, help="target eviction rate")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--row-len", type=int, default=256)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4, help="Adam lr of the gate weights")
    ap.add_argument("--lr-bias", type=float, default=0.02, help="Adam lr of the biases bo")
    ap.add_argument("--lam", type=float, default=1000.0, help="weight of the squared keep-rate penalty")
    ap.add_argument("--ramp", type=float, default=0.3, help="fraction of steps over which the target ramps from 0")
    ap.add_argument("--init-bias", type=float, default=2.0, help="initial bo (positive: keep everything at first)")
    ap.add_argument("--answer-weight", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run", default=None, help="run dir name under training/runs/ (default gate-<pct>)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt-minutes", type=float, default=2.0)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--out", default=None, help="safetensors path (default models/kvscope-tiny/gates/gate-<pct>.safetensors)")
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    pct = int(round(args.target * 100))
    run_dir = os.path.join(HERE, "runs", args.run or f"gate-{pct}")
    os.makedirs(run_dir, exist_ok=True)
    base_path = args.base or default_base()
    base_sha = lk.sha256_file(base_path)
    model = lk.load_base(base_path)
    cfg = model.config
    gates = lk.make_gates(cfg, args.init_bias)
    n_params = sum(p.numel() for p in gates.parameters())
    assert n_params == lk.gate_param_count(cfg)
    # Two groups: the biases bo mostly set the rate (one scalar per KV head: a larger lr), the
    # weights learn which tokens to keep (Adam moves all 272 read-out weights of a head
    # coherently, so z shifts ~ lr * 272 * |n1| per step: a smaller lr).
    biases = [g.bo for g in gates]
    weights = [p for n, p in gates.named_parameters() if not n.endswith("bo")]
    opt = torch.optim.Adam([{"params": weights, "lr": args.lr, "base": args.lr},
                            {"params": biases, "lr": args.lr_bias, "base": args.lr_bias}])
    step, t_used = 0, 0.0
    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        assert ck["base_sha256"] == base_sha, "checkpoint was trained on another base model"
        gates.load_state_dict(ck["gates"])
        opt.load_state_dict(ck["opt"])
        step, t_used = ck["step"], ck["seconds"]
        rng.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {step}", flush=True)
    print(f"base {base_path} (sha256 {base_sha[:12]}), gate params {n_params:,}, target eviction {args.target}, "
          f"{args.steps} steps of {args.rows}x{args.row_len}, lambda {args.lam}", flush=True)

    def save():
        torch.save({"gates": gates.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": t_used,
                    "args": vars(args), "base": base_path, "base_sha256": base_sha,
                    "py_rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    samples = lk.load_jsonl(os.path.join(args.data, f"train-{args.row_len}.jsonl"))
    t0 = time.time() - t_used
    last_ckpt = time.time()
    hist = []
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, g["base"])
        lr = opt.param_groups[0]["lr"]
        target_now = args.target * min(1.0, (step + 1) / max(1, args.ramp * args.steps))
        ids, tgt, w, pos, allowed = lk.make_batch(samples, args.row_len, args.rows, rng, args.answer_weight)
        valid = (allowed.sum(-1) > 1)  # not a sample's first token, not padding
        logits, zs = lk.forward(model, ids, pos, allowed, gates=gates, chunk=1, ste=True)
        ce, _ = lk.weighted_ce(logits, tgt, w)
        z = torch.stack(zs, 0)  # (L, B, T, n_kv)
        soft = torch.sigmoid(z)
        keep_ste = (z >= 0).float() + soft - soft.detach()
        vm = valid[None, :, :, None].float()
        keep = (keep_ste * vm).sum() / (vm.sum() * z.shape[0] * z.shape[-1])
        penalty = args.lam * (keep - (1 - target_now)) ** 2
        loss = ce + penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(gates.parameters(), 1.0)
        opt.step()
        step += 1
        t_used = time.time() - t0
        hist.append((ce.item(), keep.item()))
        if step % 10 == 0 or step == args.steps:
            k, per = keep_stats(zs, valid)
            ce_m = sum(h[0] for h in hist) / len(hist)
            print(f"step {step}/{args.steps} ce {ce_m:.3f} evict {1 - k:.3f} (target now {target_now:.3f}) "
                  f"per layer " + " ".join("/".join(f"{1 - r:.2f}" for r in layer) for layer in per) +
                  f" gnorm {gn:.2f} lr {lr:.1e} {t_used / 60:.1f} min", flush=True)
            hist = []
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    train_seconds = t_used

    gates.eval()
    t1 = time.time()
    ev = evaluate(model, gates, args.data)
    print(json.dumps(ev, indent=1), flush=True)
    with open(os.path.join(run_dir, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    if args.no_export:
        return
    os.makedirs(GATES_DIR, exist_ok=True)
    out = args.out or os.path.join(GATES_DIR, f"gate-{pct}.safetensors")
    meta = {"format": "pt", "design": "attention-gate-v1", "dg": str(lk.GATE_DIM), "target_evict": str(args.target),
            "achieved_evict_heldout": f"{ev['text_gate_c1']['evict_rate']:.4f}", "steps": str(step),
            "base_sha256": base_sha[:16]}
    lk.write_safetensors_f32(out, lk.gate_tensors(gates), meta)
    index_path = os.path.join(GATES_DIR, "gates.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    index.update({
        "design": "attention-gate-v1",
        "description": ("per layer l: n1 = input_layernorm(x); qg,kg,vg = Wq n1, Wk n1, Wv n1 (dg=16, no bias, no rotary); "
                        "o_t = sum_{j<=t} softmax_j(qg_t.kg_j/4) vg_j over all tokens (the gate's own cache is never "
                        "evicted); z[t,h] = Wo[h].concat(o_t, n1_t) + bo[h]; keep[t,h] = z >= 0. Base attention of KV "
                        "head h's query group: key j visible to query i iff j == i, or j < i and (keep[j,h] or "
                        "j // C == i // C), C = prefill chunk (trained with C = 1)."),
        "dg": lk.GATE_DIM,
        "tensors": {"model.layers.{l}.gate.wq": [lk.GATE_DIM, cfg.hidden_size],
                    "model.layers.{l}.gate.wk": [lk.GATE_DIM, cfg.hidden_size],
                    "model.layers.{l}.gate.wv": [lk.GATE_DIM, cfg.hidden_size],
                    "model.layers.{l}.gate.wo": [cfg.num_key_value_heads, lk.GATE_DIM + cfg.hidden_size],
                    "model.layers.{l}.gate.bo": [cfg.num_key_value_heads]},
        "dtype": "F32",
        "params": n_params,
    })
    gates_list = [g for g in index.get("gates", []) if g.get("file") != os.path.basename(out)]
    gates_list.append({
        "file": os.path.basename(out),
        "target_evict": args.target,
        "achieved_evict_heldout": round(ev["text_gate_c1"]["evict_rate"], 4),
        "achieved_evict_heldout_c64": round(ev["text_gate_c64"]["evict_rate"], 4),
        "evict_per_layer_head": ev["text_gate_c1"]["evict_rate_per_layer_head"],
        "heldout": "training/data/eval-text-brown-1024.jsonl, first 8 samples, 512 tokens each; rates over "
                   "(token, layer, KV head), first token excluded",
        "heldout_ce_full": round(ev["text_full"]["ce"], 4),
        "heldout_ce_gated_c1": round(ev["text_gate_c1"]["ce"], 4),
        "heldout_ce_gated_c64": round(ev["text_gate_c64"]["ce"], 4),
        "tasks": {k: v for k, v in ev.items() if not k.startswith("text_")},
        "steps": step,
        "batch": f"{args.rows}x{args.row_len}",
        "lambda": args.lam,
        "lr": args.lr,
        "seed": args.seed,
        "base": os.path.relpath(base_path, ROOT),
        "base_sha256": base_sha[:16],
        "train_seconds": round(train_seconds),
        "eval_seconds": round(time.time() - t1),
        "hardware": "CPU, 1 thread (torch.set_num_threads(1)), niced, 2-core machine shared with base-model training",
    })
    index["gates"] = sorted(gates_list, key=lambda g: g["target_evict"])
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1)
    print(f"wrote {out} and {index_path}", flush=True)


if __name__ == "__main__":
    main()
