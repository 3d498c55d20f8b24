#!/usr/bin/python3
"""Fixtures for the multi-scale window pooling (lib/kd_regions.h,
tests/unit/test_regions.c), written from ../shared/METHODS.md ("MSD"):

  stride 0: the regions of scale s are adaptive_avg_pool2d(map, s), cells
      row-major; stride S > 0: avg_pool2d(map, kernel (ceil(h/s), ceil(w/s)),
      stride S) (scale 1: the global average); scales concatenated in order
      -> out [B,R,C].  dmap = d(sum(dout * out))/d map by autograd.
  categorisation: wt[b,r] = 1 if argmax z[b,r] == argmax z[b,0] else w_comp,
      the first maximum on ties (numpy's argmax).

Writes tests/fixtures/regions.h5 (kdpipe_kind "fixture"):
  pool/caseNN: map f32 [B,C,h,w], scales i32 [n], out f32 [B,R,C],
      dout f32 [B,R,C], dmap f32 [B,C,h,w]; attribute stride
  cat/caseNN: z f32 [B,R,K], wt f32 [B,R]; attribute w_comp
  root attributes pool_cases, cat_cases.

Run: /usr/bin/python3 tests/gen/regions.py   (from the repository root)
"""
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "regions.h5")


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def regions(m, scales, stride):
    B, C, h, w = m.shape
    parts = []
    for s in scales:
        if s == 1:
            p = m.mean((2, 3), keepdim=True)
        elif stride == 0:
            p = F.adaptive_avg_pool2d(m, s)
        else:
            p = F.avg_pool2d(m, (math.ceil(h / s), math.ceil(w / s)), stride)
        parts.append(p.flatten(2).transpose(1, 2))
    return torch.cat(parts, 1)


def pool_case(g, rng, B, C, h, w, scales, stride):
    m = f32(rng.standard_normal((B, C, h, w)) + 0.5)
    mt = torch.from_numpy(m).double().requires_grad_(True)
    out = regions(mt, scales, stride)
    dout = f32(rng.standard_normal(tuple(out.shape)))
    (out * torch.from_numpy(dout).double()).sum().backward()
    for k, v in (("map", m), ("scales", np.array(scales, dtype=np.int32)), ("out", f32(out.detach().numpy())),
                 ("dout", dout), ("dmap", f32(mt.grad.numpy()))):
        g.create_dataset(k, data=v)
    g.attrs["stride"] = stride
    return out.shape[1]


def cat_case(g, rng, B, R, K, w_comp, ties):
    if ties:  # small integers: many exact ties, among them ties for the maximum
        z = f32(rng.integers(0, 3, (B, R, K)))
    else:
        z = f32(rng.standard_normal((B, R, K)))
    a = z.argmax(2)
    wt = np.where(a == a[:, :1], 1.0, w_comp)
    g.create_dataset("z", data=z)
    g.create_dataset("wt", data=f32(wt))
    g.attrs["w_comp"] = w_comp


def main():
    rng = np.random.default_rng(20261201)
    tmp = OUT + ".tmp"
    pool = [(2, 3, 7, 7, [1, 2, 4], 0), (2, 3, 4, 4, [1, 2, 4], 0), (1, 2, 5, 7, [1, 2, 3], 0),
            (2, 3, 7, 7, [1, 2, 4], 1), (2, 2, 8, 8, [1, 2, 4], 2), (1, 3, 6, 9, [1, 3, 2], 2),
            (2, 3, 4, 4, [1, 4], 3), (1, 2, 7, 7, [1, 7, 5], 0)]
    cat = [(3, 21, 10, 2.0, False), (4, 21, 5, 2.0, True), (2, 5, 3, 0.5, True)]
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        for i, c in enumerate(pool):
            R = pool_case(f.create_group("pool/case%02d" % i), rng, *c)
            print("pool case%02d %dx%d scales %s stride %d: R %d" % (i, c[2], c[3], c[4], c[5], R))
        for i, c in enumerate(cat):
            cat_case(f.create_group("cat/case%02d" % i), rng, *c)
        f.attrs["pool_cases"], f.attrs["cat_cases"] = len(pool), len(cat)
    os.replace(tmp, OUT)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
