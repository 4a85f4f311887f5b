"""Copy a training checkpoint without optimizer state (small enough to commit).

    /usr/bin/python3 training/slim_ckpt.py training/runs/main/ckpt.pt training/checkpoints/kvscope-tiny.pt
"""
import sys

import torch

ck = torch.load(sys.argv[1], map_location="cpu")
keep = {k: ck[k] for k in ("model", "step", "best", "seconds", "config", "args", "eval") if k in ck}
torch.save(keep, sys.argv[2])
print(f"{sys.argv[2]}: step {keep['step']}, {sum(v.numel() for v in keep['model'].values()):,} params")
