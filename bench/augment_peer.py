#!/usr/bin/python3
"""Peer for bench/augment.sh: MoCo v2's augmentation as the MoCo code
composes it (torchvision transforms on PIL images, one process), two views
per image, and the dataset files augment reads.

  augment_peer.py make OUT.h5 fm|rgb96 N     write a kdpipe dataset file
  augment_peer.py run  IN.h5 N               time N images x 2 views; prints
                                             one JSON line with views_per_s
"""
import gzip
import json
import random
import sys
import time

import h5py
import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms


class PILGaussianBlur:
    """MoCo v2's blur: PIL's GaussianBlur with radius sigma ~ U(0.1, 2)."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def mocov2(h, w, mean, std):
    """One view of augment's mocov2 policy, as the MoCo code composes it
    (also bench/distill_peer.py's DataLoader transform)."""
    return transforms.Compose([
        transforms.RandomResizedCrop((h, w), scale=(0.2, 1.0)),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomApply([PILGaussianBlur([0.1, 2.0])], p=0.5),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def make(out, what, n):
    if what == "fm":
        with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
            f.read(16)
            x = np.frombuffer(f.read(n * 784), np.uint8).reshape(n, 28, 28, 1)
    else:  # 96x96 RGB: Fashion-MNIST upscaled and tinted, so content is real-ish
        with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
            f.read(16)
            g = np.frombuffer(f.read(n * 784), np.uint8).reshape(n, 28, 28)
        rng = np.random.default_rng(0)
        x = np.empty((n, 96, 96, 3), np.uint8)
        for i in range(n):
            up = np.asarray(Image.fromarray(g[i]).resize((96, 96), Image.BILINEAR), np.float32)
            tint = rng.uniform(0.3, 1.0, 3)
            bg = rng.uniform(0, 80, 3)
            x[i] = np.clip(up[..., None] * tint + bg * (1 - up[..., None] / 255), 0, 255).astype(np.uint8)
    with h5py.File(out, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "dataset"
        f.create_dataset("images", data=x, chunks=(min(n, 256),) + x.shape[1:])
        f.create_dataset("labels", data=np.zeros(n, np.int32))
        xf = x.astype(np.float64) / 255
        f.attrs["mean"] = xf.mean(axis=(0, 1, 2)).astype(np.float32)
        f.attrs["std"] = xf.std(axis=(0, 1, 2)).astype(np.float32)


def run(path, n):
    torch.set_num_threads(1)
    with h5py.File(path, "r") as f:
        x = f["images"][:n]
        mean, std = list(f.attrs["mean"]), list(f.attrs["std"])
    h, w, c = x.shape[1:]
    imgs = [Image.fromarray(a[..., 0] if c == 1 else a) for a in x]
    aug = mocov2(h, w, mean, std)
    random.seed(0)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    for im in imgs:
        q, k = aug(im), aug(im)  # TwoCropsTransform
    dt = time.perf_counter() - t0
    print(json.dumps({"peer": "torchvision-PIL", "images": n, "size": [c, h, w], "seconds": dt,
                      "views_per_s": 2 * n / dt}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        run(sys.argv[2], int(sys.argv[3]))
