#!/usr/bin/python3
"""kd2torch.py MODEL.h5 OUT.pt -- a kdpipe model (or checkpoint) file as a
torch.save'd state dict: every float dataset under its PyTorch name,
num_batches_tracked as int64 scalars, in the file's order.  Optimiser state
of a checkpoint (datasets under a group) is left out.  With --prefix P the
names get a prefix (e.g. "module.").  The architecture options are printed
as JSON on stdout so the matching torchvision/CRD model can be built:
    m = torchvision.models.resnet18(num_classes=10)
    m.load_state_dict(torch.load("OUT.pt"), strict=False)
Needs torch and h5py."""
import argparse
import collections
import json
import os

import h5py
import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description="kdpipe model file -> PyTorch state dict")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--prefix", default="")
    a = ap.parse_args()
    sd = collections.OrderedDict()
    with h5py.File(a.model, "r") as f:
        kind = f.attrs.get("kdpipe_kind")
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind not in ("model", "checkpoint"):
            raise SystemExit("kd2torch: %s: kind %r, not a model file" % (a.model, kind))
        opts = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                for k, v in f.attrs.items() if k not in ("kdpipe_format", "kdpipe_kind")}
        for name, obj in f.items():
            if not isinstance(obj, h5py.Dataset):
                continue
            v = obj[()]
            if name.endswith("num_batches_tracked"):
                sd[a.prefix + name] = torch.tensor(int(v), dtype=torch.int64)
            else:
                sd[a.prefix + name] = torch.from_numpy(np.asarray(v, dtype=np.float32).copy())
    tmp = a.out + ".tmp%d" % os.getpid()
    torch.save(sd, tmp)
    os.replace(tmp, a.out)
    opts["tensors"] = len(sd)
    opts["output"] = a.out
    print(json.dumps(opts))


if __name__ == "__main__":
    main()
