"""Reference Attention-Gate decisions from PyTorch, for the runtime's gate test.

    OMP_NUM_THREADS=1 nice -n 10 /usr/bin/python3 training/gate_reference.py \
        --gate models/kvscope-tiny/gates/gate-50.safetensors --hf models/kvscope-tiny/hf \
        --out test/fixtures/gate-reference-50.json

Runs the first --samples held-out Brown texts (training/data/eval-text-brown-1024.jsonl,
--tokens tokens each, starting at <|bos|>) through the shipped f16 model (read as float32,
as eval.py reads it) with the gates applied under chunked-prefill semantics, C = --chunk:
key j is visible to query i iff j == i, or j < i and (keep[j, h] or j // C == i // C). Writes
per sample the token ids and per layer a [T][nKV] 0/1 keep array and the gate logits z
(keep iff z >= 0; |z| tells how close a decision is to flipping).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import learned_kv as lk  # noqa: E402

ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gate", default=os.path.join(ROOT, "models", "kvscope-tiny", "gates", "gate-50.safetensors"))
    ap.add_argument("--hf", default=os.path.join(ROOT, "models", "kvscope-tiny", "hf"))
    ap.add_argument("--data", default=os.path.join(HERE, "data", "eval-text-brown-1024.jsonl"))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "gate-reference-50.json"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = lk.load_hf(args.hf)
    gates = lk.load_gates(args.gate, model.config)
    _, gate_meta = lk.read_safetensors(args.gate)
    rows = lk.load_jsonl(args.data)[: args.samples]
    samples = []
    margins = []
    kept, total = 0, 0
    with torch.no_grad():
        for s in rows:
            ids = s["ids"][: args.tokens]
            _, zs = lk.forward(model, torch.tensor([ids]), gates=gates, chunk=args.chunk)
            layers = []
            for z in zs:
                z = z[0]
                keep = (z >= 0).int()
                layers.append({"keep": keep.tolist(), "z": [[round(v, 4) for v in row] for row in z.tolist()]})
                kept += keep[1:].sum().item()
                total += keep[1:].numel()
                margins.append(z.abs().flatten())
            samples.append({"ids": ids, "layers": layers})
    m = torch.cat(margins)
    fixture = {
        "gate": os.path.relpath(os.path.abspath(args.gate), ROOT),
        "gate_sha256": lk.sha256_file(args.gate)[:16],
        "gate_metadata": gate_meta,
        "model": os.path.relpath(os.path.abspath(args.hf), ROOT),
        "model_safetensors_sha256": lk.sha256_file(os.path.join(args.hf, "model.safetensors"))[:16],
        "data": f"{os.path.relpath(os.path.abspath(args.data), ROOT)}, samples 0..{args.samples - 1}, first {args.tokens} tokens",
        "chunk": args.chunk,
        "semantics": ("per layer l: n1 = input_layernorm(x); z[t,h] = gate_l(n1)[t,h]; keep = z >= 0; base attention "
                      "of KV head h's query group: key j visible to query i iff j == i, or j < i and (keep[j,h] or "
                      "j // chunk == i // chunk). Model weights: the f16 safetensors read as float32; compute float32."),
        "evict_rate": round(1 - kept / total, 4),
        "abs_z_below_1e-3": round((m < 1e-3).float().mean().item(), 5),
        "abs_z_below_1e-2": round((m < 1e-2).float().mean().item(), 5),
        "abs_z_below_1e-1": round((m < 1e-1).float().mean().item(), 5),
        "samples": samples,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e3:.0f} kB): {len(samples)} x {args.tokens} tokens, "
          f"chunk {args.chunk}, evict rate {fixture['evict_rate']:.3f}, |z| < 0.01 for {fixture['abs_z_below_1e-2']:.4%}",
          flush=True)


if __name__ == "__main__":
    main()
