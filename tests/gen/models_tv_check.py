#!/usr/bin/python3
"""The end-to-end interop check of tests/teacher-extract.bats (run only when
torch is installed):
  models_tv_check.py make DIR DATASET.h5 N   a torchvision resnet18 (1-channel
      CIFAR stem, 10 classes, BN statistics from a few random batches) saved
      as DIR/tv.pt, and its eval-mode features/logits of the first N images
      of DATASET.h5 (normalised with the file's mean/std) as DIR/tv.npz
  models_tv_check.py compare DIR FEATURES.h5  max relative difference of
      teacher-extract's /features and /logits against DIR/tv.npz; exit 1 if
      either exceeds 1e-4"""
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torchvision


def make(d, ds, n):
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 1, 28, 28))
    m.eval()
    torch.save(m.state_dict(), d + "/tv.pt")
    with h5py.File(ds, "r") as f:
        img = f["images"][:n].astype(np.float32) / 255.0
        mean = np.asarray(f.attrs["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(f.attrs["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    x = (torch.from_numpy(img).permute(0, 3, 1, 2) - torch.from_numpy(mean)) / torch.from_numpy(std)
    feats = {}
    m.fc.register_forward_pre_hook(lambda mod, inp: feats.__setitem__("f", inp[0]))
    with torch.no_grad():
        logits = m(x.contiguous())
    np.savez(d + "/tv.npz", features=feats["f"].numpy(), logits=logits.numpy())


def compare(d, path):
    ref = np.load(d + "/tv.npz")
    with h5py.File(path, "r") as f:
        worst = 0.0
        for k in ("features", "logits"):
            a, b = f[k][()], ref[k]
            e = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))
            print("%s: max rel diff %.2e" % (k, e))
            worst = max(worst, e)
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        compare(sys.argv[2], sys.argv[3])
