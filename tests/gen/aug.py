#!/usr/bin/python3
"""Fixtures for augment / lib/kd_aug: torchvision 0.14's functional API on
tensors applied with given parameters, so tests/unit/test_aug.c can apply the
same parameters in C and compare pixels (tolerance 2/255).

Writes (all small, committed):
  tests/fixtures/aug_ops.h5    input images img_NAME u8 [H,W,C]; one group
                               per case: out f32 [C,oh,ow], attributes op
                               (string), image (NAME), p (f64[]), np
  tests/fixtures/aug_fm.h5     a kdpipe dataset file: 96 Fashion-MNIST
                               test images with labels, mean/std
  tests/fixtures/aug_rgb.h5    a dataset file: 12 synthetic RGB 40x48 images,
                               no labels
  tests/fixtures/aug_badkind.h5  kind "features" (wrong kind)
  tests/fixtures/aug_badshape.h5 /images of rank 3 (bad layout)

Run: /usr/bin/python3 tests/gen/aug.py   (from the repository root)
"""
import gzip
import os
import sys

import h5py
import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

FM = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
FML = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def read_idx_images(path, n):
    with gzip.open(path, "rb") as f:
        hdr = f.read(16)
        assert int.from_bytes(hdr[:4], "big") == 0x803
        rows, cols = int.from_bytes(hdr[8:12], "big"), int.from_bytes(hdr[12:16], "big")
        data = f.read(n * rows * cols)
    return np.frombuffer(data, np.uint8).reshape(n, rows, cols, 1)


def read_idx_labels(path, n):
    with gzip.open(path, "rb") as f:
        hdr = f.read(8)
        assert int.from_bytes(hdr[:4], "big") == 0x801
        return np.frombuffer(f.read(n), np.uint8).astype(np.int32)


def synthetic_rgb(rng, h, w, kind):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == 0:  # smooth colour gradients + noise
        r = 255 * (x / (w - 1))
        g = 255 * (y / (h - 1))
        b = 127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
        img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    elif kind == 1:  # flat patches: gray (max == min), saturated primaries, ties
        img = np.zeros((h, w, 3))
        img[: h // 2, : w // 2] = [128, 128, 128]
        img[: h // 2, w // 2 :] = [255, 0, 0]
        img[h // 2 :, : w // 2] = [0, 200, 200]
        img[h // 2 :, w // 2 :] = [30, 60, 250]
        img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = [250, 250, 10]
        img += rng.normal(0, 3, (h, w, 3)) * (rng.random((h, w, 1)) < 0.3)
    else:  # uniform noise
        img = rng.integers(0, 256, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_t(u8):
    """u8 [H,W,C] -> float tensor [C,H,W] in [0,1], as ToTensor."""
    return torch.from_numpy(u8.copy()).permute(2, 0, 1).float() / 255.0


def chain(u8, p):
    """The augment pipeline with explicit parameters (kd_aug_apply)."""
    (oc, oh, ow, pre_h, pre_w, top, left, h, w, resize, jit, o0, o1, o2, o3, f0, f1, f2, f3, gray, blur,
     ksize, sigma, flip, m0, m1, m2, s0, s1, s2) = p
    img = to_t(u8)
    if img.shape[0] == 1 and oc == 3:
        img = img.expand(3, -1, -1).clone()
    elif img.shape[0] == 3 and oc == 1:
        img = F.rgb_to_grayscale(img, 1)
    if pre_h > 0:
        img = F.resize(img, [int(pre_h), int(pre_w)], InterpolationMode.BILINEAR, antialias=False)
    if resize:
        img = F.resized_crop(img, int(top), int(left), int(h), int(w), [int(oh), int(ow)],
                             InterpolationMode.BILINEAR, antialias=False)
    else:
        img = F.crop(img, int(top), int(left), int(h), int(w))
    if jit:
        for o in (o0, o1, o2, o3):
            o = int(o)
            if o == 0:
                img = F.adjust_brightness(img, f0)
            elif o == 1:
                img = F.adjust_contrast(img, f1)
            elif o == 2:
                img = F.adjust_saturation(img, f2)
            else:
                img = F.adjust_hue(img, f3)
    if gray:
        img = F.rgb_to_grayscale(img, img.shape[0])
    if blur:
        img = F.gaussian_blur(img, [int(ksize), int(ksize)], [sigma, sigma])
    if flip:
        img = F.hflip(img)
    img = F.normalize(img, [m0, m1, m2][: int(oc)], [s0, s1, s2][: int(oc)])
    return img


def main():
    print("torchvision", torchvision.__version__, file=sys.stderr)
    rng = np.random.default_rng(20240521)
    fm = read_idx_images(FM, 200)
    fml = read_idx_labels(FML, 200)
    imgs = [("fm0", fm[0]), ("fm123", fm[123]),
            ("rgb_grad", synthetic_rgb(rng, 16, 20, 0)),
            ("rgb_flat", synthetic_rgb(rng, 16, 16, 1)),
            ("rgb_noise", synthetic_rgb(rng, 12, 18, 2))]
    cases = []

    def add(name, u8, op, p, out):
        cases.append((name, u8, op, np.asarray(p, np.float64), out.detach().numpy().astype(np.float32)))

    for name, u8 in imgs:
        H, W, C = u8.shape
        t = to_t(u8)
        add(name, u8, "from_u8", [C], t)
        add(name, u8, "from_u8", [3 if C == 1 else 1],
            t.expand(3, -1, -1) if C == 1 else F.rgb_to_grayscale(t, 1))
        # resized crops: down, up, odd boxes, whole image, 1-pixel wide
        for box, osz in [((2, 3, H - 5, W - 4), (H, W)), ((5, 4, 9, 11), (H, W)), ((0, 0, H, W), (H // 2 + 1, W // 3 + 2)),
                         ((1, 2, H - 2, W - 3), (17, 23)), ((3, 7, 1, 5), (8, 8)), ((0, 0, H, W), (H + 9, W + 1))]:
            if box[0] + box[2] > H or box[1] + box[3] > W:
                continue
            add(name, u8, "resized_crop", list(box) + list(osz),
                F.resized_crop(t, *box, list(osz), InterpolationMode.BILINEAR, antialias=False))
        for box in [(-4, -4, H, W), (3, -2, H - 2, W), (0, 0, 5, 7), (H - 5, W - 3, 8, 9)]:
            add(name, u8, "crop", list(box), F.crop(t, *box))
        for cs in [(H - 3, W - 3), (H - 4, W - 5), (H + 2, W + 4)]:
            add(name, u8, "center_crop", list(cs), F.center_crop(t, list(cs)))
        for s in [H + 5, min(H, W) - 7, 13]:
            add(name, u8, "resize_short", [s], F.resize(t, [s], InterpolationMode.BILINEAR, antialias=False))
        for f in [0.6, 1.0, 1.4, 0.0]:
            add(name, u8, "brightness", [f], F.adjust_brightness(t, f))
        for f in [0.6, 1.4, 0.0, 2.5]:
            add(name, u8, "contrast", [f], F.adjust_contrast(t, f))
        for f in [0.6, 1.4, 0.0]:
            add(name, u8, "saturation", [f], F.adjust_saturation(t, f))
        for h in [-0.5, -0.1, 0.03, 0.1, 0.37, 0.5]:
            add(name, u8, "hue", [h], F.adjust_hue(t, h))
        add(name, u8, "grayscale", [], F.rgb_to_grayscale(t, C))
        for k, s in [(3, 0.1), (3, 0.8), (7, 1.1), (13, 2.0), (9, 0.5), (23, 3.7)]:
            if k // 2 >= min(H, W):
                continue
            add(name, u8, "blur", [k, s], F.gaussian_blur(t, [k, k], [s, s]))
        add(name, u8, "hflip", [], F.hflip(t))
        mean, std = [0.286, 0.41, 0.5][:C], [0.353, 0.25, 0.2][:C]
        add(name, u8, "normalize", mean + std, F.normalize(t, mean, std))

    # whole pipelines with explicit (random) parameters, as kd_aug_apply
    for name, u8 in imgs:
        H, W, C = u8.shape
        for rep in range(6):
            oc = C if rep % 3 else (3 if C == 1 else 1)
            oh, ow = (H, W) if rep < 3 else (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
            pre_h = pre_w = 0
            if rep == 5:  # eval-like: resize then a plain centre crop
                s = min(oh, ow) + 3
                pre_h, pre_w = (int(s * H / W), s) if W <= H else (s, int(s * W / H))
                top, left = int(round((pre_h - oh) / 2.0)), int(round((pre_w - ow) / 2.0))
                h, w, resize = oh, ow, 0
            else:
                h, w = int(rng.integers(3, H + 1)), int(rng.integers(3, W + 1))
                top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
                resize = 1
            order = list(rng.permutation(4))
            f = [float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.6, 1.4)),
                 float(rng.uniform(-0.1, 0.1))]
            sigma = float(rng.uniform(0.1, 2.0))
            k = 2 * int(np.ceil(3 * sigma)) + 1
            while k // 2 >= min(oh, ow):
                k -= 2
            p = [oc, oh, ow, pre_h, pre_w, top, left, h, w, resize, 1] + order + f + \
                [int(rep % 2 == 1), int(rep != 2), k, sigma, int(rep % 2 == 0), 0.3, 0.4, 0.5, 0.35, 0.25, 0.2]
            add(name, u8, "chain", p, chain(u8, p))

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "aug_ops.h5")
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        f.attrs["ncases"] = len(cases)
        f.attrs["torchvision"] = torchvision.__version__
        for i, (name, u8, op, p, out) in enumerate(cases):
            if "img_" + name not in f:
                f.create_dataset("img_" + name, data=u8)
            g = f.create_group("c%04d" % i)
            g.create_dataset("out", data=out, compression="gzip", compression_opts=9, shuffle=True)
            g.attrs["op"] = op
            g.attrs["image"] = name
            g.attrs["p"] = p if p.size else np.zeros(1)
            g.attrs["np"] = p.size
    print(path, len(cases), "cases", os.path.getsize(path), "bytes", file=sys.stderr)

    def dataset(path, images, labels, kind="dataset"):
        with h5py.File(path, "w", libver="latest") as f:
            f.attrs["kdpipe_format"] = 1
            f.attrs["kdpipe_kind"] = kind
            f.create_dataset("images", data=images, compression="gzip", shuffle=True,
                             chunks=(min(len(images), 64),) + images.shape[1:])
            if labels is not None:
                f.create_dataset("labels", data=labels)
            x = images.astype(np.float64) / 255.0
            f.attrs["mean"] = x.mean(axis=(0, 1, 2)).astype(np.float32)
            f.attrs["std"] = x.std(axis=(0, 1, 2)).astype(np.float32)
            f.attrs["source"] = "tests/gen/aug.py"
        print(path, os.path.getsize(path), "bytes", file=sys.stderr)

    dataset(os.path.join(OUT, "aug_fm.h5"), fm[:96], fml[:96])
    rgb = np.stack([synthetic_rgb(rng, 40, 48, i % 3) for i in range(12)])
    dataset(os.path.join(OUT, "aug_rgb.h5"), rgb, None)
    dataset(os.path.join(OUT, "aug_badkind.h5"), fm[:4], fml[:4], kind="features")
    with h5py.File(os.path.join(OUT, "aug_badshape.h5"), "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "dataset"
        f.create_dataset("images", data=fm[:4, :, :, 0])


if __name__ == "__main__":
    main()
