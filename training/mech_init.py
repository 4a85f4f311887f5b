"""Mechanistic initialisation: a fresh kvscope-tiny whose first two layers start with a working
copy circuit (previous-token heads in layer 0, induction heads in layer 1), written by hand into
otherwise randomly initialised weights. Training (train.py --init) then starts from a model that
can already look up "what followed this token last time", instead of having to discover that
two-layer circuit by gradient descent (which did not happen within the CPU budgets tried here:
see training/README.md).

    /usr/bin/python3 training/mech_init.py --out training/runs/mech/init.pt [--check]

Residual stream layout (hidden 256), set up in the token embedding:
  T  dims   0..127  token identity: each embedding row ~ N(0, 1) there
  C  dims 128..135  a constant c for every token (adds the same logit to every token through the
                    tied LM head, so it changes nothing in the output distribution)
  P1 dims 136..167  written by layer 0 head 0: R0 e(token at t-1)
  P2 dims 168..199  written by layer 0 head 1: R0 e(token at t-2)
  dims 200..255     left to training
Layer 0, KV head 0 (query heads 0-3): keys read only C, so scores depend only on the distance;
  RoPE pairs f = 0..7 (the fast-rotating ones) give a kernel peaked at distance 1 (head 0) or 2
  (head 1); values are R0 e (a 32-dim projection of the token identity).
Layer 1 (content matching uses only the slow RoPE pairs, f = 8..15 with rope_theta 1e7, which
  turn by < 0.7 rad over 2048 positions):
  KV head 0 / query head 0: two-token induction, q = [A R0 e(t), B P1(t)], k = [A P1(j), B P2(j)]:
    position j scores high when token j-1 equals token t and token j-2 equals token t-1;
  KV head 1 / query head 4: one-token induction, q = C R0 e(t), k = C P1(j);
  values R1 e(j) / R2 e(j), written back into T scaled by --copy-gain, so the LM head raises the
  logit of the token found after the earlier occurrence.
Everything else keeps the usual random init. `pin` in the checkpoint marks the hand-set entries
(train.py --pin-steps keeps them fixed for a while).
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import Llama, LlamaConfig  # noqa: E402

T0, T1 = 0, 128
C0, C1 = 128, 136
P1 = 136
P2 = 168
HD = 32


def orth(rows, cols, g):
    m = torch.randn(cols, cols, generator=g)
    q, _ = torch.linalg.qr(m)
    return q[:rows].clone()  # rows x cols, orthonormal rows


def rope_pair_dims(fs):
    return [f for f in fs] + [f + HD // 2 for f in fs]


P3 = 200  # --long-match: R0 e(token at t-3), 16 dims
P4 = 216  # --long-match: R0 e(token at t-4), 16 dims
PW = 16


def build(seed=1, theta=1e7, pos_scale=60.0, match_scale=30.0, copy_gain=6.0, c=1.0, out_scale=0.05,
          long_match=False, split=(3, 3, 3, 7), long_gain=1.0):
    cfg = LlamaConfig(rope_theta=theta)
    torch.manual_seed(seed)
    model = Llama(cfg)
    g = torch.Generator().manual_seed(seed)
    pin = {}

    def setp(name, idx, value):
        p = dict(model.named_parameters())[name]
        with torch.no_grad():
            p[idx] = value
        m = pin.setdefault(name, torch.zeros_like(p, dtype=torch.bool))
        m[idx] = True

    sd = dict(model.named_parameters())
    E = sd["embed_tokens.weight"]
    V = E.shape[0]
    emb_T = torch.randn(V, T1 - T0, generator=g)
    setp("embed_tokens.weight", (slice(None), slice(T0, T1)), emb_T)
    setp("embed_tokens.weight", (slice(None), slice(C0, C1)), torch.full((V, C1 - C0), c))
    setp("embed_tokens.weight", (slice(None), slice(P1, 200)), torch.zeros(V, 200 - P1))
    with torch.no_grad():
        rms0 = E.pow(2).mean(-1).sqrt().mean().item()  # RMSNorm divisor of layer 0's input
    cn = c / rms0  # normalised value of each C dim

    inv = torch.tensor([theta ** (-2 * f / HD) for f in range(HD // 2)])
    fast, slow = list(range(0, 8)), list(range(8, 16))

    # --- layer 0: previous-token heads (KV head 0; query heads 0 and 1) ---
    # score(d) = sum_f w_f cos(theta_f (d - delta)): weights from a small search maximising the
    # smallest gap between d = delta and every other distance in 0..2047 (gap 0.21 of the peak).
    w = torch.tensor([0.44, 0.117, 0.088, 0.088, 0.091, 0.093, 0.083, 0.0]) + 1e-3
    w = w / w.sum()
    L0 = "layers.0.self_attn."
    kvec = torch.zeros(HD)
    for i, f in enumerate(fast):
        kvec[f] = math.sqrt(w[i])
    # k = Wk x_norm reads only C: spread over the C dims
    setp(L0 + "k_proj.weight", (slice(0, HD), slice(None)), torch.zeros(HD, 256))
    setp(L0 + "k_proj.weight", (slice(0, HD), slice(C0, C1)), kvec[:, None].expand(HD, C1 - C0) / ((C1 - C0) * cn))
    # scores are divided by sqrt(head_dim); a peak of pos_scale logits above the mean
    prev_heads = ((0, 1), (1, 2), (2, 3), (3, 4)) if long_match else ((0, 1), (1, 2))
    pend = P4 + PW if long_match else 200  # end of the dims the circuit writes
    for h, delta in prev_heads:
        qvec = torch.zeros(HD)
        for i, f in enumerate(fast):
            a = math.sqrt(w[i]) * pos_scale * math.sqrt(HD)
            qvec[f] = a * math.cos(inv[f] * delta)
            qvec[f + HD // 2] = -a * math.sin(inv[f] * delta)
        rows = slice(h * HD, (h + 1) * HD)
        setp(L0 + "q_proj.weight", (rows, slice(None)), torch.zeros(HD, 256))
        setp(L0 + "q_proj.weight", (rows, slice(C0, C1)), qvec[:, None].expand(HD, C1 - C0) / ((C1 - C0) * cn))
    R0 = orth(HD, T1 - T0, g)
    # values: R0 e (un-normalised scale: x_norm = e / rms0)
    setp(L0 + "v_proj.weight", (slice(0, HD), slice(None)), torch.zeros(HD, 256))
    setp(L0 + "v_proj.weight", (slice(0, HD), slice(T0, T1)), R0 * rms0)
    # outputs: head 0 -> P1, head 1 -> P2, heads 2-3 silent; nothing else of heads 0-3 writes there
    setp(L0 + "o_proj.weight", (slice(None), slice(0, 4 * HD)), torch.zeros(256, 4 * HD))
    setp(L0 + "o_proj.weight", (slice(P1, P1 + HD), slice(0, HD)), torch.eye(HD))
    setp(L0 + "o_proj.weight", (slice(P2, P2 + HD), slice(HD, 2 * HD)), torch.eye(HD))
    if long_match:
        S = orth(PW, HD, g)  # the 16-dim projection P3 / P4 keep of the 32-dim value
        setp(L0 + "o_proj.weight", (slice(P3, P3 + PW), slice(2 * HD, 3 * HD)), S)
        setp(L0 + "o_proj.weight", (slice(P4, P4 + PW), slice(3 * HD, 4 * HD)), S)
    # keep layer 0's other writers out of the circuit's dims at the start
    setp(L0 + "o_proj.weight", (slice(P1, pend), slice(4 * HD, 8 * HD)), torch.zeros(pend - P1, 4 * HD))
    setp("layers.0.mlp.down_proj.weight", (slice(P1, pend), slice(None)), torch.zeros(pend - P1, cfg.intermediate_size))

    # --- layer 1: induction heads ---
    # layer 1's input: e + P1 + P2 (each P ~ 32 dims of unit scale); its RMSNorm divisor:
    rms1 = math.sqrt((rms0 ** 2 * 256 + 2 * HD + (2 * PW if long_match else 0)) / 256)
    L1 = "layers.1.self_attn."
    sd_slow = rope_pair_dims(slow)  # 16 dims
    A = orth(8, HD, g)
    B = orth(8, HD, g)
    Cm = orth(16, HD, g)
    # the expected match term: |A R0 e|^2 ~ 8 (unit-variance e); scale so a full match scores
    # match_scale logits (after the 1/sqrt(head_dim))
    lam2 = match_scale * math.sqrt(HD) / (8 + 8)
    lam = math.sqrt(lam2)
    # KV head 0 keys: [A P1 ; B P2] in the slow dims
    Wk = torch.zeros(HD, 256)
    Wk[sd_slow[:8], P1:P1 + HD] = A * lam
    Wk[sd_slow[8:], P2:P2 + HD] = B * lam
    setp(L1 + "k_proj.weight", (slice(0, HD), slice(None)), Wk * rms1)
    Wq = torch.zeros(HD, 256)
    Wq[sd_slow[:8], T0:T1] = (A @ R0) * lam
    Wq[sd_slow[8:], P1:P1 + HD] = B * lam
    setp(L1 + "q_proj.weight", (slice(0, HD), slice(None)), Wq * rms1)
    if not long_match:
        # KV head 1 keys: Cm P1 (16 slow dims); query head 4: Cm R0 e
        lam1 = math.sqrt(match_scale * math.sqrt(HD) / 16)
        Wk = torch.zeros(HD, 256)
        Wk[sd_slow, P1:P1 + HD] = Cm * lam1
        setp(L1 + "k_proj.weight", (slice(HD, 2 * HD), slice(None)), Wk * rms1)
        Wq = torch.zeros(HD, 256)
        Wq[sd_slow, T0:T1] = (Cm @ R0) * lam1
        setp(L1 + "q_proj.weight", (slice(4 * HD, 5 * HD), slice(None)), Wq * rms1)
    else:
        # KV head 1 / query head 4: four-token induction. The 16 slow dims are split between
        # the terms token(t)=token(j-1), token(t-1)=token(j-2), token(t-2)=token(j-3) and
        # token(t-3)=token(j-4) (`split` dims each; the last, most distant term gets the most:
        # it is the one that tells apart needles that share their cue, e.g. "... KEY is: VALUE").
        lam1 = math.sqrt(match_scale * math.sqrt(HD) / 16)
        Wk = torch.zeros(HD, 256)
        Wq = torch.zeros(HD, 256)
        o = 0
        # (query source dims, map from the query source into the key source's space, key source dims)
        for n, (qsrc, qmap, ksrc) in zip(split, (
                ((T0, T1), R0, (P1, P1 + HD)),
                ((P1, P1 + HD), None, (P2, P2 + HD)),
                ((P2, P2 + HD), S, (P3, P3 + PW)),
                ((P3, P3 + PW), None, (P4, P4 + PW)))):
            D = orth(n, ksrc[1] - ksrc[0], g)  # n x (key source width)
            rows = sd_slow[o:o + n]
            Wk[rows, ksrc[0]:ksrc[1]] = D * lam1
            qm = D if qmap is None else D @ qmap  # maps the query source into the same space
            Wq[rows, qsrc[0]:qsrc[1]] = qm * lam1
            o += n
        assert o == 16, split
        setp(L1 + "k_proj.weight", (slice(HD, 2 * HD), slice(None)), Wk * rms1)
        setp(L1 + "q_proj.weight", (slice(4 * HD, 5 * HD), slice(None)), Wq * rms1)
    # values: R1 e / R2 e; outputs back into T
    R1 = orth(HD, T1 - T0, g)
    R2 = orth(HD, T1 - T0, g)
    for kv, R in ((0, R1), (1, R2)):
        Wv = torch.zeros(HD, 256)
        Wv[:, T0:T1] = R * rms1
        setp(L1 + "v_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wv)
    for h, R in ((0, R1), (4, R2)):
        Wo = torch.zeros(256, HD)
        Wo[T0:T1, :] = R.t() * copy_gain * (long_gain if (h == 4 and long_match) else 1.0)
        setp(L1 + "o_proj.weight", (slice(None), slice(h * HD, (h + 1) * HD)), Wo)
    # The tied LM head gives every token a large logit for itself (|e|^2 over 128 unit-variance
    # dims): a small final-norm weight keeps logits in a sane range (trained freely afterwards).
    with torch.no_grad():
        model.norm.weight.fill_(out_scale)
    return model, cfg, pin


@torch.no_grad()
def copy_check(model, n=32, seg=(8, 48), row=256, seed=7, vocab=4096, first=6, pad_text=True):
    """Second-copy cross-entropy on random token segments repeated at a random offset
    (filler of random tokens between the copies), and first-copy CE for comparison."""
    rng = random.Random(seed)
    ce2, ce1, acc = [], [], []
    for _ in range(n):
        L = rng.randint(*seg)
        s = [rng.randrange(first, vocab) for _ in range(L)]
        gap = [rng.randrange(first, vocab) for _ in range(rng.randint(0, row - 2 * L - 2))]
        ids = [0] + s + gap + s
        x = torch.tensor(ids[:-1])[None]
        y = torch.tensor(ids[1:])
        lg = model(x)[0]
        ce = F.cross_entropy(lg, y, reduction="none")
        st = 1 + L + len(gap)  # index in ids of the second copy's first token
        ce2.append(ce[st:].mean().item())  # predicting 2nd copy tokens 2..L (first is unpredictable)
        ce1.append(ce[:L].mean().item())
        acc.append((lg[st:].argmax(-1) == y[st:]).float().mean().item())
    return sum(ce1) / n, sum(ce2) / n, sum(acc) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "runs", "mech", "init.pt"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--theta", type=float, default=1e7)
    ap.add_argument("--pos-scale", type=float, default=60.0)
    ap.add_argument("--match-scale", type=float, default=30.0)
    ap.add_argument("--copy-gain", type=float, default=6.0)
    ap.add_argument("--out-scale", type=float, default=0.05)
    ap.add_argument("--long-match", action="store_true",
                    help="previous-token heads at distance 1-4 and a four-token induction head in place of the one-token one")
    ap.add_argument("--split", default="3,3,3,7", help="--long-match: slow dims per match term (sum 16)")
    ap.add_argument("--long-gain", type=float, default=1.0, help="--long-match: the four-token head's copy gain, relative")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg, pin = build(args.seed, args.theta, args.pos_scale, args.match_scale, args.copy_gain, out_scale=args.out_scale,
                            long_match=args.long_match, split=tuple(int(x) for x in args.split.split(",")),
                            long_gain=args.long_gain)
    if args.check:
        ce1, ce2, acc = copy_check(model)
        print(f"random-token copy: first copy CE {ce1:.2f}, second copy CE {ce2:.2f} (chance {math.log(4090):.2f}), "
              f"second-copy argmax accuracy {acc:.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"model": model.state_dict(), "step": 0, "seconds": 0.0, "config": cfg.to_dict(), "pin": pin,
                "mech_init": vars(args)}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
