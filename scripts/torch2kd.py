#!/usr/bin/python3
"""torch2kd.py -- convert a PyTorch state dict (torchvision, CRD, MoCo) into a
kdpipe model file.

Usage: torch2kd.py STATE.pt -o MODEL.h5 --arch NAME [--in-channels C]
           [--num-classes K] [--cifar-stem] [--head mlp:H:E[:bn]]
           [--width-mult W] [--strip-prefix P] [--head-from PREFIX]

STATE.pt is what torch.save wrote: a state dict, or a checkpoint dict with
"state_dict" / "model" in it.  Names must be the PyTorch module names kdpipe
uses (torchvision's; CRD's for the CIFAR models; the projection head as
head.0, head.1, ...).  --strip-prefix removes a prefix such as
"module.encoder_q." (MoCo); --head-from fc renames MoCo's fc.0/fc.2 MLP to
head.0/head.2.  Options not given are inferred from the tensors (input
channels from the first conv, classes from the classifier, the head from
head.*).  Every tensor the architecture needs must be present: the C loader
checks names and shapes.  Needs torch and h5py (Debian python3-torch,
python3-h5py)."""
import argparse
import os
import re
import sys

import h5py
import numpy as np
import torch

FIRST_CONV = ("conv1.weight", "features.0.0.weight")
CLASSIFIERS = ("fc.weight", "classifier.1.weight", "classifier.3.weight")


def load_state(path):
    obj = torch.load(path, map_location="cpu")
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        sys.exit("torch2kd: %s: not a state dict" % path)
    return obj


def main():
    ap = argparse.ArgumentParser(description="PyTorch state dict -> kdpipe model file")
    ap.add_argument("state")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--in-channels", type=int)
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--cifar-stem", action="store_true")
    ap.add_argument("--head", help="mlp:H:E[:bn] (default: inferred from head.* tensors)")
    ap.add_argument("--width-mult", type=float, default=1.0)
    ap.add_argument("--strip-prefix", default="")
    ap.add_argument("--head-from", help="module prefix to rename to head (MoCo: fc)")
    a = ap.parse_args()

    sd = load_state(a.state)
    out = {}
    for k, v in sd.items():
        if a.strip_prefix:
            if not k.startswith(a.strip_prefix):
                continue
            k = k[len(a.strip_prefix):]
        if a.head_from and k.startswith(a.head_from + "."):
            k = "head." + k[len(a.head_from) + 1:]
        if not torch.is_tensor(v):
            continue
        out[k] = v.detach().cpu()
    if not out:
        sys.exit("torch2kd: no tensors left (check --strip-prefix)")

    in_ch = a.in_channels
    if in_ch is None:
        for k in FIRST_CONV:
            if k in out:
                in_ch = int(out[k].shape[1])
                break
        else:
            sys.exit("torch2kd: cannot infer --in-channels")
    k_cls = a.num_classes
    if k_cls is None:
        k_cls = 0
        for k in CLASSIFIERS:
            if k in out:
                k_cls = int(out[k].shape[0])
    hh = he = hbn = 0
    if a.head:
        m = re.fullmatch(r"mlp:(\d+):(\d+)(:bn)?", a.head)
        if not m:
            sys.exit("torch2kd: --head mlp:H:E[:bn]")
        hh, he, hbn = int(m.group(1)), int(m.group(2)), int(bool(m.group(3)))
    elif "head.0.weight" in out:
        hh = int(out["head.0.weight"].shape[0])
        hbn = int("head.1.running_mean" in out)
        last = "head.3.weight" if hbn else "head.2.weight"
        if last not in out:
            sys.exit("torch2kd: head.0 present but not %s" % last)
        he = int(out[last].shape[0])
    if k_cls == 0:  # a classifier-less model: drop any stale classifier tensors
        out = {k: v for k, v in out.items() if not k.startswith(("fc.", "classifier."))}

    tmp = a.output + ".tmp%d" % os.getpid()
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["kdpipe_format"] = np.int64(1)
            f.attrs["kdpipe_kind"] = "model"
            f.attrs["arch"] = a.arch
            f.attrs["in_channels"] = np.int64(in_ch)
            f.attrs["num_classes"] = np.int64(k_cls)
            f.attrs["cifar_stem"] = np.int64(int(a.cifar_stem))
            f.attrs["head_hidden"] = np.int64(hh)
            f.attrs["head_out"] = np.int64(he)
            f.attrs["head_bn"] = np.int64(hbn)
            f.attrs["width_mult"] = np.float64(a.width_mult)
            for k, v in out.items():
                if k.endswith("num_batches_tracked"):
                    f.create_dataset(k, data=np.int64(v.item()))
                else:
                    f.create_dataset(k, data=v.float().numpy())
        os.replace(tmp, a.output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print('{"arch": "%s", "tensors": %d, "in_channels": %d, "num_classes": %d, "head": [%d, %d, %d], "output": "%s"}'
          % (a.arch, len(out), in_ch, k_cls, hh, he, hbn, a.output))


if __name__ == "__main__":
    main()
