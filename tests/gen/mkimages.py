#!/usr/bin/python3
"""Tiny ingest inputs for tests/dataset.bats: a CIFAR-10 batch, and a PNG
ImageFolder tree with gray, gray+alpha, RGB, RGBA, palette and 16-bit files (written with
zlib, no PIL), plus *.npy files holding the pixels dataset(1) must produce.
Usage: mkimages.py OUTDIR"""
import os, struct, sys, zlib
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(5)

# CIFAR-10: records of label byte + 3072 planar bytes.
imgs = rng.integers(0, 256, size=(7, 3, 32, 32), dtype=np.uint8)
labs = np.array([3, 0, 9, 1, 1, 5, 7], dtype=np.uint8)
with open(os.path.join(out, "data_batch_1.bin"), "wb") as f:
    for l, im in zip(labs, imgs):
        f.write(bytes([l]) + im.tobytes())
np.save(os.path.join(out, "cifar_images.npy"), imgs.transpose(0, 2, 3, 1))
np.save(os.path.join(out, "cifar_labels.npy"), labs.astype(np.int32))

def png(path, h, w, ctype, depth, rows, plte=None, trns=None):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\0" + r for r in rows)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    if plte is not None:
        data += chunk(b"PLTE", plte)
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(path, "wb").write(data)

root = os.path.join(out, "folder")
for c in ("a_cat", "b_dog"):
    os.makedirs(os.path.join(root, c), exist_ok=True)
H, W = 5, 4
expect = []
# a_cat/1.png RGB 8-bit
rgb = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
png(os.path.join(root, "a_cat", "1.png"), H, W, 2, 8, [rgb[i].tobytes() for i in range(H)])
expect.append((rgb, 0))
# a_cat/2.png gray 8-bit -> replicated to RGB
g = rng.integers(0, 256, size=(H, W), dtype=np.uint8)
png(os.path.join(root, "a_cat", "2.png"), H, W, 0, 8, [g[i].tobytes() for i in range(H)])
expect.append((np.repeat(g[:, :, None], 3, 2), 0))
# b_dog/1.png palette
pal = rng.integers(0, 256, size=(4, 3), dtype=np.uint8)
idx = rng.integers(0, 4, size=(H, W), dtype=np.uint8)
png(os.path.join(root, "b_dog", "1.png"), H, W, 3, 8, [idx[i].tobytes() for i in range(H)], plte=pal.tobytes())
expect.append((pal[idx], 1))
# b_dog/2.png RGBA, alpha 255 (opaque) so compositing is exact
rgba = rng.integers(0, 256, size=(H, W, 4), dtype=np.uint8); rgba[:, :, 3] = 255
png(os.path.join(root, "b_dog", "2.png"), H, W, 6, 8, [rgba[i].tobytes() for i in range(H)])
expect.append((rgba[:, :, :3], 1))
# b_dog/3.png 16-bit RGB: v * 257 scales back to v exactly
v = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint16)
png(os.path.join(root, "b_dog", "3.png"), H, W, 2, 16, [(v[i] * 257).astype(">u2").tobytes() for i in range(H)])
expect.append((v.astype(np.uint8), 1))
# b_dog/4.png gray+alpha, alpha 0 or 255: composited onto black -> 0 or the
# gray value (exact whatever the blending arithmetic), replicated to RGB
ga = np.stack([rng.integers(0, 256, size=(H, W)), rng.integers(0, 2, size=(H, W)) * 255], 2).astype(np.uint8)
png(os.path.join(root, "b_dog", "4.png"), H, W, 4, 8, [ga[i].tobytes() for i in range(H)])
expect.append((np.repeat((ga[:, :, 0] * (ga[:, :, 1] // 255))[:, :, None], 3, 2), 1))
np.save(os.path.join(out, "folder_images.npy"), np.stack([e[0] for e in expect]))
np.save(os.path.join(out, "folder_labels.npy"), np.array([e[1] for e in expect], dtype=np.int32))

# CIFAR-100: records of coarse label, fine label + 3072 planar bytes, and
# fine_label_names.txt beside them (in a sub-directory cifar100/).
c100 = os.path.join(out, "cifar100")
os.makedirs(c100, exist_ok=True)
imgs = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
fine = np.array([99, 0, 42, 7], dtype=np.uint8)
with open(os.path.join(c100, "train.bin"), "wb") as f:
    for l, im in zip(fine, imgs):
        f.write(bytes([l // 5, l]) + im.tobytes())
with open(os.path.join(c100, "fine_label_names.txt"), "w") as f:
    f.write("".join("class%02d\n" % i for i in range(100)) + "\n")
np.save(os.path.join(out, "cifar100_images.npy"), imgs.transpose(0, 2, 3, 1))
np.save(os.path.join(out, "cifar100_labels.npy"), fine.astype(np.int32))
