"""Copy a training checkpoint without optimizer state (small enough to commit).

    /usr/bin/python3 training/slim_ckpt.py training/runs/main/ckpt.pt training/checkpoints/kvscope-tiny.pt
    /usr/bin/python3 training/slim_ckpt.py training/runs/m3f/ckpt.pt OUT.pt --pins training/checkpoints/kvscope-tiny-vt-wip.pt

--pins copies the hand-set entries' masks ("pin", from a mech_init.py checkpoint or a slim one that
carries them) so that `train.py --init OUT.pt --pin-steps N` keeps holding them; train.py's own
checkpoints do not store the masks (it reads them from --init).
"""
import argparse

import torch

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("--pins", default=None, help="checkpoint whose 'pin' masks to carry over")
args = ap.parse_args()
ck = torch.load(args.src, map_location="cpu")
keep = {k: ck[k] for k in ("model", "step", "best", "seconds", "config", "args", "eval", "pin") if k in ck}
if args.pins:
    pins = torch.load(args.pins, map_location="cpu").get("pin")
    if not pins:
        raise SystemExit(f"{args.pins} has no 'pin' masks")
    missing = [n for n in pins if n not in keep["model"]]
    if missing:
        raise SystemExit(f"pin masks name tensors the model does not have: {missing[:3]}")
    keep["pin"] = pins
torch.save(keep, args.dst)
n_pin = sum(int(m.sum()) for m in keep["pin"].values()) if keep.get("pin") else 0
print(f"{args.dst}: step {keep['step']}, {sum(v.numel() for v in keep['model'].values()):,} params"
      + (f", {n_pin:,} pinned entries" if n_pin else ""))
