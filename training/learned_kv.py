"""Learned KV-cache compression for kvscope-tiny: the Attention-Gate (per-token, per-KV-head
keep/evict flags) and PruLong / DuoAttention head roles (per-(layer, KV head) global or
streaming). Shared by train_gate.py, train_heads.py and gate_reference.py.

The base model (training/model.py) is never modified: `forward` below re-runs its layers
with extra attention masking, reading the same weights, and equals `Llama.forward` exactly
when neither gates nor head mixing are given (checked by `selftest`).

Attention-Gate (the design shared with the WGSL runtime; see training/README.md):
  per layer l, n1 = input_layernorm(x) (what q/k/v see), one gate head of dim dg = 16:
    qg, kg, vg = Wq n1, Wk n1, Wv n1            Wq/Wk/Wv: [16, 256], no bias, no rotary
    o_t = sum_{j<=t} softmax_j(qg_t . kg_j / 4) vg_j   (causal, over all tokens; never evicted)
    z[t, h] = Wo[h] . concat(o_t, n1_t) + bo[h]         Wo: [nKV, 16 + 256], bo: [nKV]
    keep[t, h] = z[t, h] >= 0
  base attention of KV head h's group: key j visible to query i iff j == i, or j < i and
  (keep[j, h] or chunk(j) == chunk(i)), chunk(j) = j // C (C = 1: the plain rule).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import Llama, LlamaConfig, apply_rope, rope_cos_sin  # noqa: E402

NEG_INF = float("-inf")
GATE_DIM = 16


# ---------------------------------------------------------------------------------------
# Base model loading
# ---------------------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_base(ckpt: str, f16_round: bool = True) -> Llama:
    """A training checkpoint, frozen. f16_round: round every weight to float16 and back, so
    the gates/roles are trained on the numbers that ship (models/kvscope-tiny/hf is f16)."""
    ck = torch.load(ckpt, map_location="cpu")
    model = Llama(LlamaConfig(**ck["config"]))
    model.load_state_dict(ck["model"])
    if f16_round:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def load_hf(hf_dir: str) -> Llama:
    from eval import load_hf as _load  # the shipped f16 safetensors, as eval.py reads them
    model = _load(hf_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------
# Attention-Gate module
# ---------------------------------------------------------------------------------------

class AttentionGate(nn.Module):
    """One layer's gate: a single causal attention head of dim 16 over n1, then a linear
    read-out of concat(o_t, n1_t) to one logit per KV head."""

    def __init__(self, hidden: int = 256, n_kv: int = 2, dg: int = GATE_DIM, init_bias: float = 2.0):
        super().__init__()
        self.dg = dg
        std = 1.0 / math.sqrt(hidden)
        self.wq = nn.Parameter(torch.randn(dg, hidden) * std)
        self.wk = nn.Parameter(torch.randn(dg, hidden) * std)
        self.wv = nn.Parameter(torch.randn(dg, hidden) * std)
        self.wo = nn.Parameter(torch.randn(n_kv, dg + hidden) * (0.5 / math.sqrt(dg + hidden)))
        self.bo = nn.Parameter(torch.full((n_kv,), init_bias))

    def forward(self, n1: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """n1: (B, T, hidden); allowed: (B, T, T) bool, causal within each packed sample.
        Returns z: (B, T, n_kv) (keep iff z >= 0)."""
        q, k, v = n1 @ self.wq.t(), n1 @ self.wk.t(), n1 @ self.wv.t()
        s = (q @ k.transpose(-2, -1)) / math.sqrt(self.dg)
        s = s.masked_fill(~allowed, NEG_INF)
        o = F.softmax(s, dim=-1) @ v
        return torch.cat([o, n1], dim=-1) @ self.wo.t() + self.bo


def make_gates(cfg: LlamaConfig, init_bias: float = 2.0) -> nn.ModuleList:
    return nn.ModuleList([AttentionGate(cfg.hidden_size, cfg.num_key_value_heads, GATE_DIM, init_bias)
                          for _ in range(cfg.num_hidden_layers)])


def gate_param_count(cfg: LlamaConfig) -> int:
    return cfg.num_hidden_layers * (3 * GATE_DIM * cfg.hidden_size
                                    + cfg.num_key_value_heads * (GATE_DIM + cfg.hidden_size)
                                    + cfg.num_key_value_heads)


def gate_tensors(gates: nn.ModuleList) -> dict[str, torch.Tensor]:
    out = {}
    for l, g in enumerate(gates):
        for n in ("wq", "wk", "wv", "wo", "bo"):
            out[f"model.layers.{l}.gate.{n}"] = getattr(g, n).detach().float().contiguous()
    return out


def write_safetensors_f32(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
    header: dict = {"__metadata__": metadata}
    offset = 0
    names = sorted(tensors)
    for n in names:
        nbytes = tensors[n].numel() * 4
        header[n] = {"dtype": "F32", "shape": list(tensors[n].shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for n in names:
            f.write(tensors[n].numpy().astype("<f4").tobytes())
    os.replace(path + ".tmp", path)


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"]).astype(np.float32))
    return out, header.get("__metadata__", {})


def load_gates(path: str, cfg: LlamaConfig) -> nn.ModuleList:
    tensors, _ = read_safetensors(path)
    gates = make_gates(cfg)
    with torch.no_grad():
        for l, g in enumerate(gates):
            for n in ("wq", "wk", "wv", "wo", "bo"):
                getattr(g, n).copy_(tensors[f"model.layers.{l}.gate.{n}"])
    for p in gates.parameters():
        p.requires_grad_(False)
    return gates.eval()


# ---------------------------------------------------------------------------------------
# Forward pass with gates / head mixing
# ---------------------------------------------------------------------------------------

def causal_allowed(T: int, B: int = 1) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool).tril()[None].expand(B, T, T)


def index_in_sample(allowed: torch.Tensor) -> torch.Tensor:
    """(B, T) index of each token inside its packed sample (0 = its first token)."""
    return allowed.sum(-1) - 1


def streaming_allowed(allowed: torch.Tensor, sinks: int, window: int) -> torch.Tensor:
    """Streaming head: key j visible to query i iff j is one of the sample's first `sinks`
    tokens or i - j <= window: the runtime's decode step, where the cache holds sinks + window
    entries (its budget) and the new token attends to them and to itself."""
    T = allowed.shape[-1]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    sink = (index_in_sample(allowed) < sinks)[:, None, :]  # (B, 1, T) per key
    return allowed & (sink | (i - j <= window)[None])


def forward(model: Llama, ids: torch.Tensor, positions: torch.Tensor | None = None,
            allowed: torch.Tensor | None = None, gates: nn.ModuleList | None = None, chunk: int = 1,
            ste: bool = False, head_mix: torch.Tensor | None = None, stream_allowed: torch.Tensor | None = None,
            return_hidden: bool = False):
    """The base model's forward with
      gates: Attention-Gate per layer (hard keep mask; with ste, gradients reach the gates
             through sigmoid(z) by the straight-through estimator, see `_gated_probs`);
      head_mix: (layers, n_kv) weights in [0, 1]: head output = m * full + (1 - m) * streaming
             attention (stream_allowed: the streaming heads' (B, T, T) visibility).
    Returns (logits or final hidden states, list of per-layer z (B, T, n_kv) or None)."""
    c = model.config
    B, T = ids.shape
    if positions is None:
        positions = torch.arange(T).expand(B, T)
    if allowed is None:
        allowed = causal_allowed(T, B)
    cos, sin = rope_cos_sin(positions, c.head_dim, c.rope_theta)
    rep = c.num_attention_heads // c.num_key_value_heads
    base_add = torch.zeros(B, 1, T, T).masked_fill(~allowed[:, None], NEG_INF)
    if gates is not None:
        idx = torch.arange(T)
        same_chunk = (idx[:, None] // chunk) == (idx[None, :] // chunk)  # (T, T), diagonal included
        fixed = allowed & same_chunk[None]  # visible whatever the gate says (B, T, T)
        gated = allowed & ~same_chunk[None]  # visible iff the key's keep flag is set
    if stream_allowed is not None:
        stream_add = torch.zeros(B, 1, T, T).masked_fill(~stream_allowed[:, None], NEG_INF)
    zs = []
    x = model.embed_tokens(ids)
    for l, layer in enumerate(model.layers):
        att = layer.self_attn
        n1 = layer.input_layernorm(x)
        q = att.q_proj(n1).view(B, T, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = att.k_proj(n1).view(B, T, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = att.v_proj(n1).view(B, T, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(c.head_dim)  # (B, H, T, T)
        if gates is not None:
            z = gates[l](n1, allowed)  # (B, T, n_kv)
            zs.append(z)
            probs = _gated_probs(scores, base_add, z, fixed, gated, rep, ste)
        else:
            probs = F.softmax(scores + base_add, dim=-1)
        if head_mix is not None:
            m = head_mix[l].repeat_interleave(rep)[None, :, None, None]  # (1, H, 1, 1)
            probs = m * probs + (1 - m) * F.softmax(scores + stream_add, dim=-1)
        y = (probs @ v).transpose(1, 2).reshape(B, T, c.num_attention_heads * c.head_dim)
        x = x + att.o_proj(y)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    h = model.norm(x)
    if return_hidden:
        return h, zs
    return h @ model.embed_tokens.weight.t(), zs


def _gated_probs(scores, base_add, z, fixed, gated, rep, ste):
    """Attention probabilities under the gate's hard keep mask, exactly as the runtime sees
    them. With ste, the mask m_ij (1 for fixed entries, keep_j for gated ones) is treated as
    a continuous multiplier of exp(score) in the softmax, a_ij = m_ij e_ij / sum_k m_ik e_ik,
    and its derivative is taken at the hard mask with dm = d sigmoid(z) (straight-through):
        da_ij = r_ij dm_ij - a_ij sum_k r_ik dm_ik,   r_ij = e_ij / sum_k m_ik e_ik
    so an evicted key still gets the gradient "would including it lower the loss"; r is then
    replaced by the secant slopes below."""
    hard = (z >= 0)  # (B, T, n_kv)
    keep_key = hard.permute(0, 2, 1).repeat_interleave(rep, dim=1)[:, :, None, :]  # (B, H, 1, T)
    visible = fixed[:, None] | (gated[:, None] & keep_key)  # (B, H, T, T)
    logits = scores.masked_fill(~visible, NEG_INF)
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    probs = torch.exp(logits - lse)
    if not ste:
        return probs
    soft = torch.sigmoid(z)
    dm = (soft - soft.detach()).permute(0, 2, 1).repeat_interleave(rep, dim=1)[:, :, None, :]  # zero forward
    dm = dm * gated[:, None].float()
    # Slopes: the derivative at the hard mask (r) is a poor guide to a *flip*, which is what
    # the hard decision does. Use the secant slope of flipping one key instead, which is exact
    # for that key alone: re-including an evicted key moves o_i by r/(1+r) (v_j - o_i) (so
    # slope r/(1+r) < 1, where r can be e^(score gap)); removing a kept key moves it by
    # -a/(1-a) (v_j - o_i) (slope a/(1-a), capped at 20), which is large for an attention
    # sink. (Measured: gates trained with the plain slopes r and a reached the same held-out
    # figures within noise, training/README.md; the secant form is kept as the better-founded.)
    logr = (scores + base_add - lse).detach()
    a = torch.exp(logr.clamp(max=0.0))
    r = torch.where(visible, (a / (1 - a).clamp(min=1e-6)).clamp(max=20.0), torch.sigmoid(logr))
    rdm = r * dm
    return probs + rdm - probs * rdm.sum(-1, keepdim=True)


# ---------------------------------------------------------------------------------------
# Data (the training mix of training/data, packed as train.py packs it)
# ---------------------------------------------------------------------------------------

def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def make_batch(samples, row_len, rows, rng: random.Random, answer_weight=5.0):
    """train.py's make_batch (whole samples packed into rows, answer tokens weighted), with
    natural positions (no PoSE skips: the gates/roles see what the runtime sees) and no
    repeated random segments. Returns ids, targets, weights, positions, allowed (bool)."""
    from train import make_batch as tb
    ids, tgt, w, pos, mask = tb(samples, row_len, rows, rng, answer_weight, 2048, 0.0, 0.0)[:5]
    allowed = (mask[:, 0] == 0)
    return ids, tgt, w, pos, allowed


def weighted_ce(logits, tgt, w):
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
    return (ce * w.reshape(-1)).sum() / w.sum(), ce.view(w.shape)


# ---------------------------------------------------------------------------------------
# Self-test: forward() without extras == Llama.forward; chunk = T gates == no gates
# ---------------------------------------------------------------------------------------

def selftest(model: Llama):
    torch.manual_seed(0)
    ids = torch.randint(6, 4096, (2, 40))
    with torch.no_grad():
        ref = model(ids)
        out, _ = forward(model, ids)
        assert torch.allclose(ref, out, atol=1e-4), (ref - out).abs().max()
        gates = make_gates(model.config)
        out2, zs = forward(model, ids, gates=gates, chunk=64)  # one chunk: gates change nothing
        assert torch.allclose(ref, out2, atol=1e-4)
        ref_w = model(ids, window=9, sinks=2)  # model.py's window counts the current token
        mix = torch.zeros(model.config.num_hidden_layers, model.config.num_key_value_heads)
        out3, _ = forward(model, ids, head_mix=mix, stream_allowed=streaming_allowed(causal_allowed(40, 2), 2, 8))
        assert torch.allclose(ref_w, out3, atol=1e-4)
    # STE: the forward value is the hard-mask forward
    gates = make_gates(model.config, init_bias=0.0)
    a, _ = forward(model, ids, gates=gates, ste=True)
    b, _ = forward(model, ids, gates=gates, ste=False)
    assert torch.allclose(a, b, atol=1e-5)
    a.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gates.parameters())
    print("learned_kv selftest ok")


if __name__ == "__main__":
    torch.set_num_threads(1)
    selftest(load_base(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "checkpoints", "kvscope-tiny.pt")))
