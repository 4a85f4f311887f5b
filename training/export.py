"""Export a kvscope-tiny checkpoint to the Hugging Face and MLC layouts (f16, same numbers).

    /usr/bin/python3 training/export.py --ckpt training/checkpoints/kvscope-tiny.pt \
        --out models/kvscope-tiny [--logits-out path.json --logits-ids 0,5,6,...]

Writes
  <out>/hf/  config.json, model.safetensors (f16), tokenizer.json, tokenizer_config.json,
             generation_config.json
  <out>/mlc/ mlc-chat-config.json, tensor-cache.json, params_shard_*.bin (f16, MLC's fused
             qkv_proj / gate_up_proj), tokenizer.json, tokenizer_config.json
safetensors and the MLC tensor cache are written by hand from their published formats
(safetensors: 8-byte little-endian header size, JSON header, raw data; MLC: shard records of
{name, shape, dtype, format, nbytes, byteOffset}). With --logits-out, the PyTorch logits of
the exported (f16-rounded) weights for the given token ids are written too, for cross-checks.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import Llama, LlamaConfig  # noqa: E402

SPECIALS = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>"}
# Must render exactly like training/chat-format.ts (CHAT_TEMPLATE / renderChat).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def hf_tensors(model: Llama) -> dict[str, torch.Tensor]:
    """Hugging Face names -> f16 tensors (tied embeddings: no lm_head)."""
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        name = "model." + k  # embed_tokens, layers.{i}..., norm
        out[name] = v.detach().to(torch.float16).contiguous()
    return out


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
    header: dict = {"__metadata__": metadata}
    offset = 0
    names = sorted(tensors)
    for n in names:
        t = tensors[n]
        nbytes = t.numel() * 2
        header[n] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # align the data start to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for n in names:
            f.write(tensors[n].numpy().tobytes())


def mlc_tensors(hf: dict[str, torch.Tensor], n_layers: int) -> list[tuple[str, torch.Tensor]]:
    out = [("model.embed_tokens.weight", hf["model.embed_tokens.weight"])]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", hf[p + "input_layernorm.weight"]))
        out.append((p + "self_attn.qkv_proj.weight", torch.cat(
            [hf[p + "self_attn.q_proj.weight"], hf[p + "self_attn.k_proj.weight"], hf[p + "self_attn.v_proj.weight"]], 0)))
        out.append((p + "self_attn.o_proj.weight", hf[p + "self_attn.o_proj.weight"]))
        out.append((p + "post_attention_layernorm.weight", hf[p + "post_attention_layernorm.weight"]))
        out.append((p + "mlp.gate_up_proj.weight", torch.cat([hf[p + "mlp.gate_proj.weight"], hf[p + "mlp.up_proj.weight"]], 0)))
        out.append((p + "mlp.down_proj.weight", hf[p + "mlp.down_proj.weight"]))
    out.append(("model.norm.weight", hf["model.norm.weight"]))
    return out


def write_mlc_cache(out_dir: str, tensors: list[tuple[str, torch.Tensor]], shard_cap: int = 32 << 20):
    shards, cur, recs = [], bytearray(), []

    def flush():
        nonlocal cur, recs
        if not recs:
            return
        name = f"params_shard_{len(shards)}.bin"
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(cur)
        shards.append({"dataPath": name, "format": "raw-shard", "nbytes": len(cur), "records": recs,
                       "md5sum": hashlib.md5(bytes(cur)).hexdigest()})
        cur, recs = bytearray(), []

    total = 0
    n_params = 0
    for name, t in tensors:
        data = t.numpy().tobytes()
        if cur and len(cur) + len(data) > shard_cap:
            flush()
        recs.append({"name": name, "shape": list(t.shape), "dtype": "float16", "format": "raw",
                     "nbytes": len(data), "byteOffset": len(cur)})
        cur += data
        total += len(data)
        n_params += t.numel()
    flush()
    cache = {"metadata": {"ParamSize": len(tensors), "ParamBytes": total, "BitsPerParam": 16.0}, "records": shards}
    with open(os.path.join(out_dir, "tensor-cache.json"), "w") as f:
        json.dump(cache, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "models", "kvscope-tiny"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: <out>/hf/tokenizer.json)")
    ap.add_argument("--logits-out", default=None)
    ap.add_argument("--logits-ids", default=None, help="comma-separated token ids")
    ap.add_argument("--name", default="kvscope-tiny")
    args = ap.parse_args()

    ck = torch.load(args.ckpt, map_location="cpu")
    cfg = LlamaConfig(**ck["config"])
    model = Llama(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    hf = hf_tensors(model)

    hf_dir, mlc_dir = os.path.join(args.out, "hf"), os.path.join(args.out, "mlc")
    os.makedirs(hf_dir, exist_ok=True)
    os.makedirs(mlc_dir, exist_ok=True)
    tok_src = args.tokenizer or os.path.join(hf_dir, "tokenizer.json")
    tok = json.load(open(tok_src))
    vocab = tok["model"]["vocab"]
    ids = {k: vocab[v] for k, v in SPECIALS.items()}
    assert len(vocab) == cfg.vocab_size, f"tokenizer has {len(vocab)} tokens, model {cfg.vocab_size}"

    hf_config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0,
        "mlp_bias": False, "tie_word_embeddings": True, "initializer_range": cfg.initializer_range,
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"],
        "torch_dtype": "float16", "use_cache": True, "pretraining_tp": 1,
    }
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_position_embeddings,
        "bos_token": SPECIALS["bos"], "eos_token": SPECIALS["eos"], "pad_token": SPECIALS["pad"],
        "unk_token": None, "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {str(t["id"]): {"content": t["content"], "special": True, "lstrip": False,
                                                "rstrip": False, "normalized": False, "single_word": False}
                                 for t in tok["added_tokens"]},
    }
    gen_config = {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"],
                  "do_sample": False, "max_new_tokens": 64}

    if os.path.abspath(tok_src) != os.path.abspath(os.path.join(hf_dir, "tokenizer.json")):
        shutil.copy(tok_src, os.path.join(hf_dir, "tokenizer.json"))
    for d, files in ((hf_dir, {"config.json": hf_config, "tokenizer_config.json": tok_config,
                               "generation_config.json": gen_config}),
                     (mlc_dir, {"tokenizer_config.json": tok_config})):
        for fname, obj in files.items():
            with open(os.path.join(d, fname), "w") as f:
                json.dump(obj, f, indent=2)
    shutil.copy(os.path.join(hf_dir, "tokenizer.json"), os.path.join(mlc_dir, "tokenizer.json"))
    meta = {"format": "pt", "source": os.path.basename(args.ckpt), "step": str(ck.get("step", ""))}
    write_safetensors(os.path.join(hf_dir, "model.safetensors"), hf, meta)

    mlc_config = {
        "model_type": "llama", "quantization": "q0f16", "version": "0.1.0",
        "model_config": {
            "hidden_act": "silu", "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
            "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
            "num_hidden_layers": cfg.num_hidden_layers, "head_dim": cfg.head_dim, "rms_norm_eps": cfg.rms_norm_eps,
            "rope_theta": cfg.rope_theta, "position_embedding_base": cfg.rope_theta, "vocab_size": cfg.vocab_size,
            "context_window_size": cfg.max_position_embeddings, "prefill_chunk_size": cfg.max_position_embeddings,
            "tie_word_embeddings": True, "tensor_parallel_shards": 1,
        },
        "vocab_size": cfg.vocab_size, "context_window_size": cfg.max_position_embeddings, "sliding_window_size": -1,
        "prefill_chunk_size": cfg.max_position_embeddings, "attention_sink_size": -1, "tensor_parallel_shards": 1,
        "temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0,
        "conv_template": {
            "name": args.name, "system_template": "{system_message}", "system_message": "",
            "system_prefix_token_ids": [ids["bos"]], "add_role_after_system_message": True,
            "roles": {"user": "<|user|>", "assistant": "<|assistant|>"},
            "role_templates": {"user": "{user_message}", "assistant": "{assistant_message}", "tool": "{tool_message}"},
            "messages": [], "seps": [SPECIALS["eos"]], "role_content_sep": "\n", "role_empty_sep": "\n",
            "stop_str": [SPECIALS["eos"]], "stop_token_ids": [ids["eos"]], "function_string": "",
            "use_function_calling": False,
        },
        "pad_token_id": ids["pad"], "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "tokenizer_files": ["tokenizer.json", "tokenizer_config.json"],
    }
    with open(os.path.join(mlc_dir, "mlc-chat-config.json"), "w") as f:
        json.dump(mlc_config, f, indent=2)
    for old in os.listdir(mlc_dir):
        if old.startswith("params_shard_"):
            os.remove(os.path.join(mlc_dir, old))
    write_mlc_cache(mlc_dir, mlc_tensors(hf, cfg.num_hidden_layers))

    size = sum(os.path.getsize(os.path.join(d, f)) for d in (hf_dir, mlc_dir) for f in os.listdir(d))
    print(f"exported {model.num_params():,} params (step {ck.get('step')}) to {hf_dir} and {mlc_dir}: {size/1e6:.1f} MB")

    if args.logits_out:
        # Logits of the exported numbers: load the f16 weights back into float32.
        model.load_state_dict({k[len("model."):]: v.float() for k, v in hf.items()})
        tokens = [int(x) for x in args.logits_ids.split(",")] if args.logits_ids else [ids["bos"]] + list(range(300, 332))
        with torch.no_grad():
            logits = model(torch.tensor([tokens]))[0]
        with open(args.logits_out, "w") as f:
            json.dump({"ids": tokens, "logits": logits.tolist(), "argmax": logits.argmax(-1).tolist()}, f)
        print(f"wrote PyTorch logits for {len(tokens)} tokens to {args.logits_out}")


if __name__ == "__main__":
    main()
