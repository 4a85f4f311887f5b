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
--var-track --match5 --hidden 288 --vt-second (fourteenth session): the five-token circuit keeps P5
  (232-247); N moves to 248-267, N2 (a name's second token, carried to its assignment's "." by layer 1's
  query head 5 on KV head 1's fast dims) is 268-279, the flags 280-283; layer 2's query head 5 reads the
  chain lookup's keys one token later and copies N2 (see var_track_circuit).
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


H = 256  # hidden size (--hidden; build() sets it)
N0, NW = 232, 20  # --var-track: N, the name's first token carried to an assignment's "." (20 dims)
F0, FW = 252, 4  # --var-track: the "is '.'" flag, set in the "." embedding only
# --var-track --match5 (hidden >= 288): N moves to 248-267, N2 (the name's second token, --vt-second) is
# 268-279 and the flags 280-283, so the five-token induction's P5 (232-247) keeps its dims
N2_0, N2W = 268, 12


def _vocab_ids():
    """Token ids the variable-tracking circuit reads, from the bundled tokenizer's vocabulary."""
    import json
    path = os.path.join(HERE, "..", "models", "kvscope-tiny", "hf", "tokenizer.json")
    v = json.load(open(path))["model"]["vocab"]
    up = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return ((v["\u0120VAR"], v["VAR"]), v["."], [v[str(d)] for d in range(10)], [v[ch] for ch in up],
            [v["\u0120" + ch] for ch in up], v["\u0120are"])


# " VAR" / "VAR" (at a line start), ".", digits, letters, space + letter (names are " X" "O" "L")
VAR_IDS, DOT_ID, DIGIT_IDS, LETTER_IDS, SPACE_LETTER_IDS, ARE_ID = _vocab_ids()
P3 = 200  # --long-match: R0 e(token at t-3), 16 dims
P4 = 216  # --long-match: R0 e(token at t-4), 16 dims
P5 = 232  # --match5: R0 e(token at t-5), 16 dims
PW = 16


def build(seed=1, theta=1e7, pos_scale=60.0, match_scale=30.0, copy_gain=6.0, c=1.0, out_scale=0.05,
          long_match=False, split=(3, 3, 3, 7), long_gain=1.0, var_track=False, vt_carry=60.0, vt_match=40.0,
          vt_gain=1.0, vt_calib=None, vt_bos=(0.6, 0.6), vt_anchor_gain=1.0, vt_ridge=1.0, vt_robust=False,
          match5=False, hidden=256, vt_second=False, vt_second_gain=1.0, vt_value_second=0.0, vt_equalize=0):
    global H, N0, F0
    H = hidden
    if var_track and match5 and H < 288:
        raise SystemExit("--var-track with --match5 needs --hidden 288 or more (N, N2 and the flags after P5)")
    N0, F0 = (248, 280) if var_track and match5 else (232, 252)
    cfg = LlamaConfig(rope_theta=theta, hidden_size=H)
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
    if var_track:
        # equal norms: a token whose row happens to be long gets a smaller normalised C, so a weaker
        # distance kernel in layer 0, and its previous-token copy failed ("B" lost to " is")
        emb_T = emb_T / emb_T.norm(dim=1, keepdim=True) * math.sqrt(T1 - T0)
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
    setp(L0 + "k_proj.weight", (slice(0, HD), slice(None)), torch.zeros(HD, H))
    setp(L0 + "k_proj.weight", (slice(0, HD), slice(C0, C1)), kvec[:, None].expand(HD, C1 - C0) / ((C1 - C0) * cn))
    # scores are divided by sqrt(head_dim); a peak of pos_scale logits above the mean
    prev_heads = ((0, 1), (1, 2), (2, 3), (3, 4)) if long_match else ((0, 1), (1, 2))
    pend = P5 + PW if match5 else P4 + PW if long_match else 200  # end of the dims the circuit writes
    if match5:
        # --match5: a distance-5 head on KV head 1 (query head 4), which gets KV head 0's position-only
        # keys and token values; its other query heads (5-7) stay free
        prev_heads += ((4, 5),)
        setp(L0 + "k_proj.weight", (slice(HD, 2 * HD), slice(None)), torch.zeros(HD, H))
        setp(L0 + "k_proj.weight", (slice(HD, 2 * HD), slice(C0, C1)), kvec[:, None].expand(HD, C1 - C0) / ((C1 - C0) * cn))
    for h, delta in prev_heads:
        qvec = torch.zeros(HD)
        for i, f in enumerate(fast):
            a = math.sqrt(w[i]) * pos_scale * math.sqrt(HD)
            qvec[f] = a * math.cos(inv[f] * delta)
            qvec[f + HD // 2] = -a * math.sin(inv[f] * delta)
        rows = slice(h * HD, (h + 1) * HD)
        setp(L0 + "q_proj.weight", (rows, slice(None)), torch.zeros(HD, H))
        setp(L0 + "q_proj.weight", (rows, slice(C0, C1)), qvec[:, None].expand(HD, C1 - C0) / ((C1 - C0) * cn))
    R0 = orth(HD, T1 - T0, g)
    # values: R0 e (un-normalised scale: x_norm = e / rms0)
    setp(L0 + "v_proj.weight", (slice(0, HD), slice(None)), torch.zeros(HD, H))
    setp(L0 + "v_proj.weight", (slice(0, HD), slice(T0, T1)), R0 * rms0)
    if match5:
        setp(L0 + "v_proj.weight", (slice(HD, 2 * HD), slice(None)), torch.zeros(HD, H))
        setp(L0 + "v_proj.weight", (slice(HD, 2 * HD), slice(T0, T1)), R0 * rms0)
    # outputs: head 0 -> P1, head 1 -> P2, heads 2-3 silent; nothing else of heads 0-3 writes there
    setp(L0 + "o_proj.weight", (slice(None), slice(0, 4 * HD)), torch.zeros(H, 4 * HD))
    setp(L0 + "o_proj.weight", (slice(P1, P1 + HD), slice(0, HD)), torch.eye(HD))
    setp(L0 + "o_proj.weight", (slice(P2, P2 + HD), slice(HD, 2 * HD)), torch.eye(HD))
    if long_match:
        S = orth(PW, HD, g)  # the 16-dim projection P3 / P4 keep of the 32-dim value
        setp(L0 + "o_proj.weight", (slice(P3, P3 + PW), slice(2 * HD, 3 * HD)), S)
        setp(L0 + "o_proj.weight", (slice(P4, P4 + PW), slice(3 * HD, 4 * HD)), S)
    # keep layer 0's other writers out of the circuit's dims at the start
    setp(L0 + "o_proj.weight", (slice(P1, pend), slice(4 * HD, 8 * HD)), torch.zeros(pend - P1, 4 * HD))
    setp("layers.0.mlp.down_proj.weight", (slice(P1, pend), slice(None)), torch.zeros(pend - P1, cfg.intermediate_size))
    if match5:
        setp(L0 + "o_proj.weight", (slice(None), slice(4 * HD, 5 * HD)), torch.zeros(H, HD))
        setp(L0 + "o_proj.weight", (slice(P5, P5 + PW), slice(4 * HD, 5 * HD)), S)

    # --- layer 1: induction heads ---
    # layer 1's input: e + P1 + P2 (each P ~ 32 dims of unit scale); its RMSNorm divisor:
    rms1 = math.sqrt((rms0 ** 2 * H + 2 * HD + ((3 if match5 else 2) * PW if long_match else 0)) / H)
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
    Wk = torch.zeros(HD, H)
    Wk[sd_slow[:8], P1:P1 + HD] = A * lam
    Wk[sd_slow[8:], P2:P2 + HD] = B * lam
    setp(L1 + "k_proj.weight", (slice(0, HD), slice(None)), Wk * rms1)
    Wq = torch.zeros(HD, H)
    Wq[sd_slow[:8], T0:T1] = (A @ R0) * lam
    Wq[sd_slow[8:], P1:P1 + HD] = B * lam
    setp(L1 + "q_proj.weight", (slice(0, HD), slice(None)), Wq * rms1)
    if not long_match:
        # KV head 1 keys: Cm P1 (16 slow dims); query head 4: Cm R0 e
        lam1 = math.sqrt(match_scale * math.sqrt(HD) / 16)
        Wk = torch.zeros(HD, H)
        Wk[sd_slow, P1:P1 + HD] = Cm * lam1
        setp(L1 + "k_proj.weight", (slice(HD, 2 * HD), slice(None)), Wk * rms1)
        Wq = torch.zeros(HD, H)
        Wq[sd_slow, T0:T1] = (Cm @ R0) * lam1
        setp(L1 + "q_proj.weight", (slice(4 * HD, 5 * HD), slice(None)), Wq * rms1)
    else:
        # KV head 1 / query head 4: four-token induction. The 16 slow dims are split between
        # the terms token(t)=token(j-1), token(t-1)=token(j-2), token(t-2)=token(j-3) and
        # token(t-3)=token(j-4) (`split` dims each; the last, most distant term gets the most:
        # it is the one that tells apart needles that share their cue, e.g. "... KEY is: VALUE").
        lam1 = math.sqrt(match_scale * math.sqrt(HD) / 16)
        Wk = torch.zeros(HD, H)
        Wq = torch.zeros(HD, H)
        o = 0
        # (query source dims, map from the query source into the key source's space, key source dims)
        terms = (((T0, T1), R0, (P1, P1 + HD)),
                 ((P1, P1 + HD), None, (P2, P2 + HD)),
                 ((P2, P2 + HD), S, (P3, P3 + PW)),
                 ((P3, P3 + PW), None, (P4, P4 + PW)))
        if match5:  # a fifth term, token(t-4)=token(j-5): the key word stays in view one digit longer
            terms += (((P4, P4 + PW), None, (P5, P5 + PW)),)
        assert len(split) == len(terms), f"--split needs {len(terms)} numbers"
        for n, (qsrc, qmap, ksrc) in zip(split, terms):
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
        Wv = torch.zeros(HD, H)
        Wv[:, T0:T1] = R * rms1
        setp(L1 + "v_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wv)
    for h, R in ((0, R1), (4, R2)):
        Wo = torch.zeros(H, HD)
        Wo[T0:T1, :] = R.t() * copy_gain * (long_gain if (h == 4 and long_match) else 1.0)
        setp(L1 + "o_proj.weight", (slice(None), slice(h * HD, (h + 1) * HD)), Wo)
    if var_track:
        var_track_circuit(model, setp, g, inv, fast, sd_slow, R0, R1, A, B, S, rms1, copy_gain, c,
                          vt_carry, vt_match, vt_gain, vt_calib, vt_bos, vt_anchor_gain, vt_ridge, vt_robust,
                          R2=R2, second=vt_second, second_gain=vt_second_gain, value_second=vt_value_second,
                          equalize=vt_equalize)
    # The tied LM head gives every token a large logit for itself (|e|^2 over 128 unit-variance
    # dims): a small final-norm weight keeps logits in a sane range (trained freely afterwards).
    with torch.no_grad():
        model.norm.weight.fill_(out_scale)
    return model, cfg, pin


def var_track_circuit(model, setp, g, inv, fast, sd_slow, R0, R1, A, B, S, rms1, copy_gain, c,
                      carry_scale, match_scale, gain, calib=None, bos=(0.6, 0.6), anchor_gain=1.0, code_ridge=1.0, robust=False,
                      R2=None, second=False, second_gain=1.0, value_second=0.0, equalize=0):
    """Variable tracking (`VAR XOL = 12345.` ... `VAR ABC = VAR XOL.`; names are three tokens,
    " X" "O" "L"), added on top of the --long-match copy circuit:
      layer 1, query head 1 (KV head 0, fast RoPE dims): at every position, attend to the token
        8-10 back whose previous token is " VAR" (the assigned name's first token; the kernel's
        peak covers distance 10 in `VAR X O L = _ 1 2 3 4 5 .` and 8 in `VAR A B C = VAR X O L .`,
        and it is low at 3, the source name) and write its identity into N (dims 232-251);
      layer 1, query head 2 (KV head 0, slow dims): one-token induction anchored at " VAR":
        position j scores high when token j-1 equals token t and token j-2 is " VAR", so after a
        name's first token the name's second token follows;
      layer 2, value lookup (KV head 0 / query head 0): tokens t-2, t-3 (the value's last two
        digits before " are:") matched to j-1, j-2; chain lookup (KV head 1 / query head 4): tokens
        t-1, t-2 (the previous name's first two tokens, at its last token) matched to j-2, j-3. Keys
        are those tokens in per-token codes plus the "." / BOS flags, values N: both copy N of the
        "." they find into the token dims, the next name's first token.
    """
    sd = dict(model.named_parameters())
    HDh = HD // 2
    emb = sd["embed_tokens.weight"]
    E_T = emb[:, T0:T1].detach().clone()
    # the "." flag (F0-F1): only in the "." embedding (its RMSNorm scale hardly moves)
    fv = 2.0
    setp("embed_tokens.weight", (slice(None), slice(N0, F0 + FW)), torch.zeros(emb.shape[0], F0 + FW - N0))
    setp("embed_tokens.weight", (DOT_ID, slice(F0, F0 + 2)), torch.full((2,), fv))
    # BOS (id 0, first in every row) is the lookups' sink: flag dims F2-F3 mark it (the "." uses F0-F1),
    # and its token dims lose their R1 part, so what a copy head reads there is ~0
    setp("embed_tokens.weight", (DOT_ID, slice(F0 + 2, F0 + 4)), torch.zeros(2))
    setp("embed_tokens.weight", (0, slice(F0 + 2, F0 + 4)), torch.full((2,), fv))
    if robust:
        # F0 marks ".", F1 every other token but BOS, F2 BOS: the lookups' sign decision and their
        # queries' constant then come from dims only the embedding writes (not from C)
        setp("embed_tokens.weight", (slice(None), F0 + 1), torch.full((emb.shape[0],), fv))
        setp("embed_tokens.weight", (DOT_ID, slice(F0, F0 + 4)), torch.tensor([fv, 0.0, 0.0, 0.0]))
        setp("embed_tokens.weight", (0, slice(F0, F0 + 4)), torch.tensor([0.0, 0.0, fv, 0.0]))
        # and nothing but the circuit writes the C and P dims before layer 2 reads them
        for L in (0, 1):
            pre = f"layers.{L}."
            setp(pre + "self_attn.o_proj.weight", (slice(C0, C1), slice(None)), torch.zeros(C1 - C0, 8 * HD))
            setp(pre + "mlp.down_proj.weight", (slice(C0, C1), slice(None)), torch.zeros(C1 - C0, model.config.intermediate_size))
        setp("layers.1.self_attn.o_proj.weight", (slice(P1, N0), slice(None)), torch.zeros(N0 - P1, 8 * HD))
        setp("layers.1.mlp.down_proj.weight", (slice(P1, N0), slice(None)), torch.zeros(N0 - P1, model.config.intermediate_size))
    e0 = E_T[0] - R1.t() @ (R1 @ E_T[0])
    setp("embed_tokens.weight", (0, slice(T0, T1)), e0)
    E_T[0] = e0
    # the circuit's weights assume unit RMSNorm weights where layers 0-2 read: held with the rest
    # (trained freely, layer 2's grew until the lookups' scores ran into the thousands)
    for L in (0, 1, 2):
        setp(f"layers.{L}.input_layernorm.weight", slice(None), torch.ones(H))
    # nothing in layers 0-1 writes N / the flag except the carry head
    for L in (0, 1):
        pre = f"layers.{L}."
        setp(pre + "self_attn.o_proj.weight", (slice(N0, F0 + FW), slice(None)), torch.zeros(F0 + FW - N0, 8 * HD))
        setp(pre + "mlp.down_proj.weight", (slice(N0, F0 + FW), slice(None)),
             torch.zeros(F0 + FW - N0, model.config.intermediate_size))
    L1 = "layers.1.self_attn."
    # --- layer 1, query head 1: carry the assigned name's first token to the "." ---
    w = torch.tensor([0.08, 0.174, 0.132, 0.191, 0.168, 0.105, 0.147, 0.001])  # from a search: peak
    delta = 9.194  # at 8-10 is >= 0.93, elsewhere in 0-5 and 13-2047 <= 0.69 (of 1.0)
    v_vars = [R0 @ E_T[i] for i in VAR_IDS]  # P1 of the token after " VAR" / "VAR"
    cn1 = c / rms1  # normalised C value at layer 1

    def carry(kv, qh, src, d, R, token_ids, out0, width):
        """A carry head: query head qh on KV head kv's fast dims attends to the token about d back
        whose P feature `src` (P1: token j-1, P2: token j-2) is " VAR" / "VAR", and writes the
        `width` directions of R's space that keep most of `token_ids` (its values are R e) into
        dims out0.. . Returns that projection."""
        kk = torch.zeros(HD, H)
        for i, f in enumerate(fast):
            for v_var in v_vars:  # ~1 where that token is " VAR" or "VAR"
                kk[f, src:src + HD] += math.sqrt(w[i]) * v_var / v_var.norm() ** 2
        Wk = sd[L1 + "k_proj.weight"].detach()[kv * HD:(kv + 1) * HD].clone()
        for f in fast:
            Wk[f] = kk[f] * rms1
            Wk[f + HDh] = 0.0
        setp(L1 + "k_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wk)
        qv = torch.zeros(HD)
        for i, f in enumerate(fast):
            a = math.sqrt(w[i]) * carry_scale * math.sqrt(HD)
            qv[f] = a * math.cos(inv[f] * d)
            qv[f + HDh] = -a * math.sin(inv[f] * d)
        Wq = torch.zeros(HD, H)
        Wq[:, C0:C1] = qv[:, None].expand(HD, C1 - C0) / ((C1 - C0) * cn1)
        setp(L1 + "q_proj.weight", (slice(qh * HD, (qh + 1) * HD), slice(None)), Wq)
        _, _, vh = torch.linalg.svd(torch.stack([R @ E_T[i] for i in token_ids]), full_matrices=False)
        Q = vh[:width].clone()
        Wo = torch.zeros(H, HD)
        Wo[out0:out0 + width, :] = Q
        setp(L1 + "o_proj.weight", (slice(None), slice(qh * HD, (qh + 1) * HD)), Wo)
        return Q

    # N = Qn R1 e(name): the 20 directions of R1's space that keep most of the 26 first-letter
    # tokens (" A" .. " Z"), so N tells those apart almost losslessly
    Qn = carry(0, 1, P1, delta, R1, SPACE_LETTER_IDS, N0, NW)
    if second:
        # --- layer 1, query head 5 (KV head 1, whose fast key dims the five-token head leaves at 0):
        # carry the assigned name's second token (the token whose token two back is " VAR", 7-9 back:
        # 9 in `VAR X O L = _ 1 2 3 4 5 .`, 7 in `VAR A B C = VAR X O L .`, low at the source's 2)
        # into N2, through KV head 1's values R2 e
        Qn2 = carry(1, 5, P2, delta - 1, R2, LETTER_IDS, N2_0, N2W)
    # --- layer 1, query head 2: VAR-anchored one-token induction (keys [A P1; B P2] of KV head 0) ---
    match1 = 30.0
    lam = math.sqrt(match1 * math.sqrt(HD) / (8 + 8))
    Wq = torch.zeros(HD, H)
    Wq[sd_slow[:8], T0:T1] = (A @ R0) * lam
    bv = sum(B @ v for v in v_vars) * lam  # what B P2(j) is when token j-2 is " VAR" (or "VAR")
    Wq[sd_slow[8:], C0:C1] = bv[:, None].expand(8, C1 - C0) / ((C1 - C0) * cn1) / rms1
    setp(L1 + "q_proj.weight", (slice(2 * HD, 3 * HD), slice(None)), Wq * rms1)
    Wo = torch.zeros(H, HD)
    Wo[T0:T1, :] = R1.t() * copy_gain * anchor_gain
    setp(L1 + "o_proj.weight", (slice(None), slice(2 * HD, 3 * HD)), Wo)
    # --- layer 2: lookups (KV head 0: value lookup; KV head 1: chain lookup) ---
    rms2, rms2_dot, _ = layer_input_rms(model, 2, calib)  # at queries (all positions), at "." keys
    L2 = "layers.2.self_attn."
    dig = [R0 @ E_T[i] for i in DIGIT_IDS]  # what P1 / P2 hold for a digit (R0 space, 32)
    let = [R0 @ E_T[i] for i in LETTER_IDS]  # second / third letters of a name
    slet = [R0 @ E_T[i] for i in SPACE_LETTER_IDS]  # first letters (" X")

    def coded(vs, n, others, ridge):
        """An n x dim map sending each of the vectors vs to its own unit code (a random frame of
        len(vs) unit vectors in n dims), ridge-regularised against the other tokens' vectors so that
        they map to small codes: every match then scores the same, whichever token it is."""
        X = torch.stack(vs, 1)  # dim x k
        Y = torch.randn(n, X.shape[1], generator=g)
        Y = Y / Y.norm(dim=0, keepdim=True)
        O = torch.stack(others, 1)  # dim x m
        # minimise |M X - Y|^2 + ridge |M O|^2 / m * k
        A = X @ X.t() + ridge * (O @ O.t()) * X.shape[1] / O.shape[1]
        M = Y @ X.t() @ torch.linalg.inv(A)
        # --vt-equalize: the ridge leaves some tokens with short codes (a weak match: the chain lookup's match
        # on a name's letters varied 4-6x between letters); rescaling each token's target code by how short its
        # fitted code came out, and refitting, evens them out
        for _ in range(equalize):
            Y = Y / (M @ X).norm(dim=0, keepdim=True)
            M = Y @ X.t() @ torch.linalg.inv(A)
        return M

    def energy(D, vs):
        return sum(float((D @ v).pow(2).sum()) for v in vs) / len(vs)

    # Slow pair 15 (dims 15 and 31, the slowest) decides where a lookup may look, by sign rather
    # than by level, so that it holds whatever a position's RMS (which the copy heads' writes swing
    # by +-50%) does to every score of that key:
    #   dim 31 (constant query): -G at every position (the C dims), back to -theta0 at a "." (its
    #     flag), back to 0 at BOS (its flag), so a BOS key always scores exactly 0;
    #   dim 15: +(theta0 - theta) at a ".", times a constant query (chain lookup) or a gate that is
    #     ~1 only where token t-1 is " are" (value lookup).
    # A "." then scores match - theta where the query is live (> 0 = beats BOS only on a near-full
    # match) and everything else stays below BOS.
    mrows = [d for d in sd_slow if d not in (15, 31)]
    Qs = HD ** 0.25  # q . k / sqrt(HD) = product of the two unit readings
    G, theta0 = 4 * match_scale, 2 * match_scale
    cn2 = c / rms2
    Wv = torch.zeros(HD, H)
    Wv[0:NW, N0:N0 + NW] = torch.eye(NW) * rms2_dot
    sdig = [S @ v for v in dig]
    sslet = [S @ v for v in slet]
    coded_ids = set(DIGIT_IDS) | set(LETTER_IDS) | set(SPACE_LETTER_IDS)
    rest = [R0 @ E_T[i] for i in range(6, E_T.shape[0], 7) if i not in coded_ids]  # a sample of the other tokens
    srest = [S @ v for v in rest]
    D1 = coded(dig, 7, rest, code_ridge)  # 7 x 32 on P1(j): token j-1 = t-2 (the value's last digit)
    D2 = coded(sdig, 7, srest, code_ridge)  # 7 x 16 on S P2(j): token j-2 = t-3 (P3(t) = S R0 e)
    Ea = coded(let, 7, rest, code_ridge)  # 7 x 32 on P2(j): token j-2 (second letter) = t-1
    Eb = coded(sslet, 7, srest, code_ridge)  # 7 x 16 on P3(j): token j-3 (first letter) = t-2
    v_are = R0 @ E_T[ARE_ID]
    # (KV head, query head, [(query source, width, query map, key source, width, key map, match energy)],
    #  the "." flag's query: None = constant, else a P1 direction that gates it)
    en_a, en_b = energy(Ea, let), energy(Eb, sslet)
    en_d1, en_d2 = energy(D1, dig), energy(D2, sdig)

    def term_scale(en, n_terms):
        """The scale of a lookup term's query and key maps: a full match on all n_terms scores match_scale."""
        return math.sqrt(match_scale * math.sqrt(HD) / (en * n_terms))

    def lookup_query(terms, gate, gate_src=P1):
        """A lookup's query map: each (query source, width, map, match energy) term in its own slow
        rows, scaled so that a full match scores match_scale (the keys use the same lam), and the
        "." flag's query (dim 15): constant, or where gate (a direction of gate_src: P1, the previous
        token, or P2, the one before) is that token."""
        Wq = torch.zeros(HD, H)
        o = 0
        for qs, qw, qm, en in terms:
            n = qm.shape[0]
            lam = term_scale(en, len(terms))
            Wq[mrows[o:o + n], qs:qs + qw] = qm * lam * rms2
            o += n
        if robust:
            Wq[31, F0 + 1] = Qs / fv * rms2
        else:
            Wq[31, C0:C1] = Qs / ((C1 - C0) * cn2)
        if gate is None:
            if robust:
                Wq[15, F0 + 1] = Qs / fv * rms2
            else:
                Wq[15, C0:C1] = Qs / ((C1 - C0) * cn2)
        else:  # the "." flag counts only where token t-1 is the cue word (" are")
            Wq[15, gate_src:gate_src + HD] = Qs * gate / gate.norm() ** 2 * rms2
        return Wq

    heads = (
        (0, 0, ((P2, HD, D1, P1, HD, D1, en_d1),
                (P3, PW, D2, P2, HD, D2 @ S, en_d2)), v_are, bos[0]),
        (1, 4, ((P1, HD, Ea, P2, HD, Ea, en_a),
                (P2, HD, Eb @ S, P3, PW, Eb, en_b)), None, bos[1]),
    )
    # readout: N of a first-letter token -> that token's embedding (least squares over the 26), scaled
    # so the logit it adds matches a copy head's (copy_gain x |R1 e|^2 ~ copy_gain x 32)
    X = torch.stack([Qn @ R1 @ E_T[i] for i in SPACE_LETTER_IDS], 1)  # 20 x 26
    Y = torch.stack([E_T[i] for i in SPACE_LETTER_IDS], 1)  # 128 x 26
    readout = Y @ torch.linalg.pinv(X) * copy_gain * HD / (T1 - T0)
    for kv, qh, terms, gate, thr in heads:
        theta = thr * match_scale
        Wk = torch.zeros(HD, H)
        o = 0
        for qs, qw, qm, ks, kw, km, en in terms:
            n = qm.shape[0]
            lam = term_scale(en, len(terms))
            Wk[mrows[o:o + n], ks:ks + kw] = km * lam * rms2_dot
            o += n
        if robust:  # -theta0 at a "." (F0), -G at every other token (F1), 0 at BOS; queries read F1
            Wk[31, F0] = -theta0 * Qs / fv * rms2_dot
            Wk[31, F0 + 1] = -G * Qs / fv * rms2
            Wk[15, F0] = (theta0 - theta) * Qs / fv * rms2_dot
        else:
            Wk[31, C0:C1] = -G * Qs / ((C1 - C0) * c) * rms2_dot
            Wk[31, F0:F0 + 2] = (G - theta0) * Qs / (2 * fv) * rms2_dot
            Wk[31, F0 + 2:F0 + 4] = G * Qs / (2 * fv) * rms2_dot  # cancels the C term at BOS, whatever its RMS
            Wk[15, F0:F0 + 2] = (theta0 - theta) * Qs / (2 * fv) * rms2_dot
        Wq = lookup_query([(qs, qw, qm, en) for qs, qw, qm, _, _, _, en in terms], gate)
        setp(L2 + "k_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wk)
        setp(L2 + "v_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wv)
        setp(L2 + "q_proj.weight", (slice(qh * HD, (qh + 1) * HD), slice(None)), Wq)
        Wo = torch.zeros(H, HD)
        Wo[T0:T1, 0:NW] = readout * gain
        setp(L2 + "o_proj.weight", (slice(None), slice(qh * HD, (qh + 1) * HD)), Wo)
    if second:
        # --- layer 2, query head 5: the second-token lookup, on the chain lookup's keys (KV head 1). One
        # token after the chain lookup, at the next name's first token, tokens t-2, t-3 are the previous
        # name's first two: matched to j-2, j-3 they find the same "." the chain lookup found, whose N2
        # (the assigned name's second token, carried by layer 1's query head 5) KV head 1's values now
        # also hold. It breaks the tie where two names share their first token (the VAR-anchored
        # induction head finds both).
        kv, qh = 1, 5
        Wq = lookup_query(((P2, HD, Ea, en_a), (P3, PW, Eb, en_b)), None)
        # a "." (whose own tokens j-2, j-3 match its key) never reads itself or another "."
        Wq[15, F0] = -2 * Qs / fv * rms2
        setp(L2 + "q_proj.weight", (slice(qh * HD, (qh + 1) * HD), slice(None)), Wq)
        Wv2 = Wv.clone()
        Wv2[NW:NW + N2W, N2_0:N2_0 + N2W] = torch.eye(N2W) * rms2_dot
        # BOS (the sink) keeps its own N2 (what the carry copies there from BOS itself): the values
        # subtract it through the BOS flag, so a lookup that finds no "." adds nothing
        got = []
        hk = model.layers[2].input_layernorm.register_forward_hook(lambda m, inp, out: got.append(inp[0][0, 0]))
        with torch.no_grad():
            model(torch.zeros(1, 1, dtype=torch.long))
        hk.remove()
        Wv2[NW:NW + N2W, F0 + 2] = -rms2_dot * got[0][N2_0:N2_0 + N2W] / fv
        setp(L2 + "v_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wv2)
        X2 = torch.stack([Qn2 @ R2 @ E_T[i] for i in LETTER_IDS], 1)  # 12 x 26
        Y2 = torch.stack([E_T[i] for i in LETTER_IDS], 1)  # 128 x 26
        readout2 = Y2 @ torch.linalg.pinv(X2) * copy_gain * HD / (T1 - T0)
        Wo = torch.zeros(H, HD)
        Wo[T0:T1, NW:NW + N2W] = readout2 * second_gain
        setp(L2 + "o_proj.weight", (slice(None), slice(qh * HD, (qh + 1) * HD)), Wo)
    if value_second:
        # --- layer 2, query head 1 (--vt-value-second): the first answer name's second token. At the answer's
        # first letter (`... 8 4 2 are: M`) the value lookup has already found the `= 87842.` line and copied
        # its N; one token later, tokens t-3, t-4 are the value's last two digits: matched to j-1, j-2 on the
        # value lookup's own keys (KV head 0) they find that "." again, whose N2 KV head 0's values now also
        # hold (as KV head 1's do), so the name's second token is copied instead of guessed among the names
        # that share its first letter. The query is live only where token t-2 is " are".
        kv, qh = 0, 1
        # P3 holds S R0 e(t-3) (16 dims); the key's first term is D1 R0 e(j-1): M1 maps the one to the
        # other, exactly on the ten digits (least squares)
        Xd = torch.stack(dig, 1)  # 32 x 10
        M1 = D1 @ Xd @ torch.linalg.pinv(S @ Xd)
        Wq = lookup_query(((P3, PW, M1, en_d1), (P4, PW, D2, en_d2)), v_are, gate_src=P2)
        setp(L2 + "q_proj.weight", (slice(qh * HD, (qh + 1) * HD), slice(None)), Wq)
        setp(L2 + "v_proj.weight", (slice(kv * HD, (kv + 1) * HD), slice(None)), Wv2)
        Wo = torch.zeros(H, HD)
        Wo[T0:T1, NW:NW + N2W] = readout2 * value_second
        setp(L2 + "o_proj.weight", (slice(None), slice(qh * HD, (qh + 1) * HD)), Wo)
        # the other query heads of KV head 0 (2, 3) do not read the N2 part of its values at the start
        for h in (2, 3):
            setp(L2 + "o_proj.weight", (slice(None), slice(h * HD + NW, h * HD + NW + N2W)), torch.zeros(H, N2W))


@torch.no_grad()
def layer_input_rms(model, layer, calib=None, n=8, T=512, seed=3):
    """RMS of the residual stream entering `layer`, averaged over all positions, over "." positions
    and at BOS: on the first n rows of a training data file (`calib`, JSON lines with `ids`; the copy
    heads' writes make real text's residual larger than random tokens'), else on random tokens."""
    if calib and os.path.exists(calib):
        import json
        rows = [json.loads(l)["ids"][:T] for _, l in zip(range(n), open(calib))]
        T = min(len(r) for r in rows)
        ids = torch.tensor([r[:T] for r in rows])
    else:
        gr = torch.Generator().manual_seed(seed)
        ids = torch.randint(6, model.config.vocab_size, (n, T), generator=gr)
        ids[:, 0] = 0
    got = []
    h = model.layers[layer].input_layernorm.register_forward_hook(
        lambda m, inp, out: got.append(inp[0].pow(2).mean(-1).sqrt()))
    model(ids)
    h.remove()
    r = got[0]
    dots = ids == DOT_ID
    return r.mean().item(), (r[dots].mean().item() if dots.any() else r.mean().item()), r[:, 0].mean().item()


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


@torch.no_grad()
def vt_check(model, path, n=40, every=1, drop_last=False):
    """Teacher-forced argmax accuracy at each answer token of held-out task rows (variable tracking,
    NIAH; `ids` = prompt + answer, `ans` = index of the answer's first token): every `every`-th row, n rows."""
    import json
    rows = [json.loads(l) for l in open(path)][::every][:n]
    hits, exact = None, 0
    for r in rows:
        ids = r["ids"]
        a = r["ans"]
        lg = model(torch.tensor(ids[:-1])[None])[0]
        pred = lg[a - 1:].argmax(-1)
        tgt = torch.tensor(ids[a:])
        ok = (pred == tgt).float()
        hits = ok if hits is None else hits[:len(ok)] + ok[:len(hits)]
        exact += int((ok[:-1] if drop_last else ok).all())
    return (hits / len(rows)).tolist(), exact / len(rows)


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
    ap.add_argument("--match5", action="store_true",
                    help="--long-match with a distance-5 previous-token head and a five-token induction head "
                         "(--split then has five numbers)")
    ap.add_argument("--niah-data", default=os.path.join(HERE, "data", "eval-niah4-1024.jsonl"),
                    help="--check: held-out 4-key NIAH rows for the teacher-forced check (every 5th of the first 100)")
    ap.add_argument("--long-gain", type=float, default=1.0, help="--long-match: the four-token head's copy gain, relative")
    ap.add_argument("--var-track", action="store_true",
                    help="add the variable-tracking circuit (needs --long-match): name carry, VAR-anchored induction, value / chain lookups")
    ap.add_argument("--vt-carry", type=float, default=60.0)
    ap.add_argument("--vt-match", type=float, default=40.0)
    ap.add_argument("--vt-gain", type=float, default=1.0)
    ap.add_argument("--vt-bos", default="0.6,0.6",
                    help="value lookup, chain lookup: a \".\" beats the BOS sink when its match exceeds this fraction of a full one")
    ap.add_argument("--vt-ridge", type=float, default=1.0, help="the lookups' token codes: weight of keeping other tokens' codes small")
    ap.add_argument("--vt-robust", action="store_true",
                    help="the lookups' sign decision from embedding-only flag dims, and writers into C / P held at zero")
    ap.add_argument("--vt-anchor-gain", type=float, default=1.0, help="the VAR-anchored induction head's copy gain, relative")
    ap.add_argument("--vt-calib", default=os.path.join(HERE, "data", "train-512.jsonl"),
                    help="training rows whose layer-2 input RMS sets the lookups' scale (random tokens if missing)")
    ap.add_argument("--vt-data", default=os.path.join(HERE, "data", "eval-vartrack-1024.jsonl"),
                    help="--check: held-out variable-tracking rows for the teacher-forced check")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size (--var-track with --match5 needs 288)")
    ap.add_argument("--vt-second", action="store_true",
                    help="--var-track: carry each name's second token to its \".\" (N2) and a second-token lookup on the chain lookup's keys")
    ap.add_argument("--vt-second-gain", type=float, default=1.0)
    ap.add_argument("--vt-equalize", type=int, default=0,
                    help="--var-track: refit the lookups' token codes this many times so every token's code has unit length")
    ap.add_argument("--vt-value-second", type=float, default=0.0,
                    help="--vt-second: the first answer name's second token, copied (this gain) from the \".\" the value "
                         "lookup finds (layer 2 query head 1 on the value lookup's keys); 0 = off")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.var_track and not args.long_match:
        ap.error("--var-track reads the --long-match circuit's P3/P4 features: add --long-match")
    if args.match5 and not args.long_match:
        ap.error("--match5 extends --long-match")
    if args.vt_second and not (args.var_track and args.vt_robust and args.match5):
        ap.error("--vt-second needs --var-track --vt-robust --match5 (its N2 dims are in the hidden-288 layout)")
    if args.vt_value_second and not args.vt_second:
        ap.error("--vt-value-second reads the N2 feature that --vt-second carries: add --vt-second")
    torch.set_num_threads(1)
    model, cfg, pin = build(args.seed, args.theta, args.pos_scale, args.match_scale, args.copy_gain, out_scale=args.out_scale,
                            long_match=args.long_match, split=tuple(int(x) for x in args.split.split(",")),
                            long_gain=args.long_gain, var_track=args.var_track, vt_carry=args.vt_carry,
                            vt_match=args.vt_match, vt_gain=args.vt_gain,
                            vt_calib=args.vt_calib, vt_bos=tuple(float(x) for x in args.vt_bos.split(",")),
                            vt_anchor_gain=args.vt_anchor_gain, vt_ridge=args.vt_ridge, vt_robust=args.vt_robust,
                            match5=args.match5, hidden=args.hidden, vt_second=args.vt_second,
                            vt_second_gain=args.vt_second_gain, vt_value_second=args.vt_value_second,
                            vt_equalize=args.vt_equalize)
    if args.check:
        ce1, ce2, acc = copy_check(model)
        print(f"random-token copy: first copy CE {ce1:.2f}, second copy CE {ce2:.2f} (chance {math.log(4090):.2f}), "
              f"second-copy argmax accuracy {acc:.3f}")
        if args.long_match and os.path.exists(args.niah_data):
            per, exact = vt_check(model, args.niah_data, every=5, n=20, drop_last=True)
            print("4-key NIAH (20 rows), teacher-forced argmax per answer token: " + " ".join(f"{a:.2f}" for a in per)
                  + f"; all but the end-of-text token right: {exact:.2f}")
        if args.var_track and os.path.exists(args.vt_data):
            per, exact = vt_check(model, args.vt_data)
            print("variable tracking, teacher-forced argmax per answer token: " + " ".join(f"{a:.2f}" for a in per)
                  + f"; all answer tokens right: {exact:.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"model": model.state_dict(), "step": 0, "seconds": 0.0, "config": cfg.to_dict(), "pin": pin,
                "mech_init": vars(args)}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
