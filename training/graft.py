"""Graft a newly hand-wired circuit part into a trained checkpoint.

mech_init.py builds the same random draws for the same arguments, so two starting points that differ by one
option (OLD without it, NEW with it) differ exactly in the entries that option sets. Those entries (where NEW
differs from OLD, or where NEW pins an entry OLD did not) are copied from NEW into the trained checkpoint CKPT;
everything else keeps its trained value, and the pin masks become the union (train.py then holds the grafted
entries like the rest). Build OLD and NEW side by side with the same code: a starting point rebuilt on another
machine or thread count can differ from the original in the last bits of its hand-set entries, and those entries
would be copied too (the per-tensor counts printed show it).

    /usr/bin/python3 training/graft.py CKPT OLD NEW OUT
"""
import argparse

import torch


def graft(ck, old, new):
    model, pins = dict(ck["model"]), {k: v.clone() for k, v in ck.get("pin", {}).items()}
    report = []
    for name, nv in new["model"].items():
        ov = old["model"][name]
        npin = new["pin"].get(name)
        opin = old["pin"].get(name)
        take = nv != ov
        if npin is not None:
            take |= npin & (~opin if opin is not None else torch.ones_like(npin))
        n = int(take.sum())
        if not n:
            continue
        if model[name].shape != nv.shape:
            raise SystemExit(f"{name}: checkpoint shape {tuple(model[name].shape)} != new init {tuple(nv.shape)}")
        t = model[name].clone()
        t[take] = nv[take].to(t.dtype)
        model[name] = t
        if npin is not None:
            pins[name] = (pins[name] | npin) if name in pins else npin.clone()
        report.append((name, n))
    out = dict(ck)
    out["model"], out["pin"] = model, pins
    return out, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("out")
    a = ap.parse_args()
    ck, old, new = (torch.load(p, map_location="cpu") for p in (a.ckpt, a.old, a.new))
    if old["model"].keys() != new["model"].keys() or old["model"].keys() != ck["model"].keys():
        raise SystemExit("checkpoint, OLD and NEW hold different tensors")
    out, report = graft(ck, old, new)
    for name, n in report:
        print(f"{name}: {n:,} entries grafted")
    torch.save(out, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
