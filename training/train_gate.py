"""Train Attention-Gates for kvscope-tiny (base model frozen) and export them.

    OMP_NUM_THREADS=1 nice -n 10 /usr/bin/python3 training/train_gate.py --target 0.5 --steps 240
    ... --target 0.75 ...     # writes models/kvscope-tiny/gates/gate-75.safetensors
    (shipped gates: every flag at its default; --resume re-runs the
    evaluation/export from training/runs/gate-<pct>/ckpt.pt)

The gate design (shapes, semantics) is in learned_kv.py and training/README.md. Training:
  * data: the training mix of training/data/train-<row-len>.jsonl (plain text + recall tasks,
    answer tokens x --answer-weight in the loss, as train.py), rows packed with whole samples,
    natural positions;
  * forward: hard keep mask (z >= 0) in every layer, chunk C = 1 (a key is visible to later
    queries only if kept); backward: straight-through through sigmoid(z) (learned_kv._gated_probs);
  * loss = weighted next-token CE + lambda * (keep - (1 - target_now))^2, keep = mean over
    (layer, token, KV head) of the straight-through keep flag of every token except each sample's
    first (forward value: the hard keep rate, gradient: through sigmoid), target_now ramps
    linearly from 0 to --target eviction over the first --ramp of the steps;
  * Adam on the 51,336 gate parameters: weights lr --lr (3e-4), biases bo lr --lr-bias (0.03),
    bo initialised to --init-bias (1.0: nearly everything kept at first); warm-up 20 steps,
    constant, linear decay to 10% over the last 20%; gradient norm clipped at 1.
At the end: held-out evaluation (Brown text, 512-token slices, and every token of passkey-512 /
kvrecall-512 prompts; full cache vs gates at C = 1 and C = 64 vs random eviction at the same
per-head rates), f32 safetensors export and an entry in models/kvscope-tiny/gates/gates.json.
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


def _run_set(model, seqs, gates, chunk):
    """CE per token over token sequences (all tokens after the first), eviction statistics."""
    nll, n, keeps, per_acc, first_keep = 0.0, 0, [], None, 0.0
    for ids in seqs:
        ids = torch.tensor(ids)[None]
        T = ids.shape[1] - 1
        logits, zs = lk.forward(model, ids[:, :-1], gates=gates, chunk=chunk)
        nll += torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
        n += T
        if gates is not None and not isinstance(gates[0], RandomGate):
            valid = torch.ones(1, T, dtype=torch.bool)
            valid[:, 0] = False
            k, per = keep_stats(zs, valid)
            keeps.append(k)
            first_keep += torch.stack([(z[0, 0] >= 0).float().mean() for z in zs]).mean().item()
            per_acc = per if per_acc is None else [[a + b for a, b in zip(x, y)] for x, y in zip(per_acc, per)]
    rec = {"ce": nll / n, "tokens": n}
    if keeps:
        rec["first_token_keep"] = first_keep / len(seqs)
        rec["evict_rate"] = 1 - sum(keeps) / len(keeps)
        rec["evict_rate_per_layer_head"] = [[round(1 - v / len(seqs), 4) for v in layer] for layer in per_acc]
    return rec


@torch.no_grad()
def evaluate(model, gates, data_dir, n_text=8, text_len=512, n_task=10):
    """Held-out figures on two sets, each for the full cache, the gates at C = 1 and C = 64,
    and random eviction at the gates' own per-(layer, KV head) rates (C = 1, first token kept):
      text:  CE per token on the first text_len tokens of n_text Brown documents;
      tasks: CE per token (every token) on n_task prompts each of the passkey-512 and
             kvrecall-512 grids (held-out haystacks and seeds: the training mix's kind of data);
    plus answer CE / exact match on those prompts (full cache vs gates at C = 1)."""
    sets = {"text": [s["ids"][: text_len + 1] for s in lk.load_jsonl(os.path.join(data_dir, "eval-text-brown-1024.jsonl"))[:n_text]]}
    grids = {}
    for task in ("passkey-512", "kvrecall-512"):
        path = os.path.join(data_dir, f"eval-{task}.jsonl")
        if os.path.exists(path):
            rows = lk.load_jsonl(path)
            grids[task] = rows[:: max(1, len(rows) // n_task)][:n_task]
    sets["tasks"] = [s["ids"] for rows in grids.values() for s in rows]
    out = {}
    for set_name, seqs in sets.items():
        for name, g, chunk in (("full", None, 1), ("gate_c1", gates, 1), ("gate_c64", gates, 64)):
            out[f"{set_name}_{name}"] = _run_set(model, seqs, g, chunk)
        rates = out[f"{set_name}_gate_c1"]["evict_rate_per_layer_head"]
        rand = torch.nn.ModuleList([RandomGate(torch.tensor(r), seed=l) for l, r in enumerate(rates)])
        out[f"{set_name}_random_same_rate"] = _run_set(model, seqs, rand, 1)
    for task, rows in grids.items():
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
            out[f"{task}_answers_{name}"] = {"answer_ce": sum(ce) / len(ce), "exact_match": sum(em) / len(em), "n": len(em)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=None, help="base checkpoint (default: training/runs/r3/FINAL's, else the committed one)")
    ap.add_argument("--target", type=float, default=0.5, help="target eviction rate")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--row-len", type=int, default=256)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4, help="Adam lr of the gate weights")
    ap.add_argument("--lr-bias", type=float, default=0.03, help="Adam lr of the biases bo")
    ap.add_argument("--lam", type=float, default=1000.0, help="weight of the squared keep-rate penalty")
    ap.add_argument("--ramp", type=float, default=0.3, help="fraction of steps over which the target ramps from 0")
    ap.add_argument("--init-bias", type=float, default=1.0, help="initial bo (positive: keep everything at first)")
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
        "achieved_evict_heldout_tasks": round(ev["tasks_gate_c1"]["evict_rate"], 4),
        "heldout": "training/data/eval-text-brown-1024.jsonl, first 8 samples, 512 tokens each; rates over "
                   "(token, layer, KV head), first token excluded; C = 1 unless _c64",
        "heldout_tasks": "10 prompts each of eval-passkey-512 and eval-kvrecall-512 (held-out seeds/haystacks), every token",
        "ce": {k: round(v["ce"], 4) for k, v in ev.items() if "ce" in v},
        "first_token_keep": {k: round(v["first_token_keep"], 3) for k, v in ev.items() if "first_token_keep" in v},
        "answers": {k: v for k, v in ev.items() if "_answers_" in k},
        "steps": step,
        "batch": f"{args.rows}x{args.row_len}",
        "lambda": args.lam,
        "lr": args.lr,
        "seed": args.seed,
        "base": os.path.relpath(base_path, ROOT),
        "base_sha256": base_sha[:16],
        "train_seconds": round(train_seconds),
        "eval_seconds": round(time.time() - t1),
        "hardware": "CPU, 1 thread (torch.set_num_threads(1)), niced, on a 2-core machine shared with other jobs (benchmarks, probes)",
    })
    index["gates"] = sorted(gates_list, key=lambda g: g["target_evict"])
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1)
    print(f"wrote {out} and {index_path}", flush=True)


if __name__ == "__main__":
    main()
