#!/usr/bin/python3
"""Fixtures for the sparse spatial aggregation (lib/kd_ssa.h,
tests/unit/test_ssa.c), written from ../shared/METHODS.md ("SSA"), in
float64 on float32 inputs:

  s = normalize(x over channels) per position i (n = h*w positions);
  G = s^T s; kept(i) = i first, then the k-1 other j by decreasing G_ij,
  the lower j first among equals (a stable sort); A_ij = relu(G_ij)^gamma on
  kept(i), 0 elsewhere; y_i = normalize(sum_j A_ij s_j / sum_j A_ij).
  dx = d(sum(dy * y))/dx by autograd, the selection held fixed.

Writes tests/fixtures/ssa.h5 (kdpipe_kind "fixture"):
  caseNN: x f32 [B,C,h,w], y, dy, dx f32 [B,C,h,w], kept i32 [B,n,k];
      attributes k, gamma, ties (1: the map is built to have exact ties in
      G where the choice changes y or dx)
  root attribute cases.

Run: /usr/bin/python3 tests/gen/ssa.py   (from the repository root)
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ssa.h5")


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def kept_sets(G, k):
    B, n, _ = G.shape
    Gs = G.clone()
    Gs[:, torch.arange(n), torch.arange(n)] = float("inf")  # j = i always first
    return torch.sort(Gs, dim=2, descending=True, stable=True).indices[:, :, :k]


def ssa(x, k, gamma):
    B, C, h, w = x.shape
    n = h * w
    s = F.normalize(x.reshape(B, C, n), dim=1)
    G = s.transpose(1, 2) @ s  # [B,n,n]
    kept = kept_sets(G.detach(), k)
    mask = torch.zeros_like(G).scatter_(2, kept, 1.0)
    A = torch.relu(G).pow(gamma) * mask
    agg = torch.einsum("bij,bcj->bci", A, s) / A.sum(2)[:, None, :]
    return F.normalize(agg, dim=1).reshape(B, C, h, w), kept


def tie_map():
    """C=3, 4x4: position 0 along e0 and pairs equally similar to it but
    different from each other (1 and 3, 2 and 5), so that k cuts through
    equal G; and six copies of one vector (6..11), so that position 11 is
    kept for itself although k-1 lower positions are as similar."""
    v = [[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 0], [2, 0, 0], [1, 0, 1]] + [[0, 1, 1]] * 6 + \
        [[0, 2, 0.5], [1, 1, 1], [0, 0, 1], [0.5, 1, 0]]
    x = np.array(v, dtype=np.float64).T.reshape(1, 3, 4, 4)
    return f32(np.concatenate([x, x[:, :, ::-1, :] * 0.5], 0))


def case(g, rng, x, k, gamma, ties):
    xt = torch.from_numpy(x).double().requires_grad_(True)
    y, kept = ssa(xt, k, gamma)
    dy = f32(rng.standard_normal(x.shape))
    (y * torch.from_numpy(dy).double()).sum().backward()
    for name, v in (("x", x), ("y", f32(y.detach().numpy())), ("dy", dy), ("dx", f32(xt.grad.numpy())),
                    ("kept", np.ascontiguousarray(kept.numpy(), dtype=np.int32))):
        g.create_dataset(name, data=v)
    g.attrs["k"], g.attrs["gamma"], g.attrs["ties"] = k, gamma, int(ties)


def main():
    rng = np.random.default_rng(20261202)
    tmp = OUT + ".tmp"
    rand = [((2, 5, 4, 4), 4, 2.0), ((1, 3, 5, 3), 1, 2.0), ((2, 4, 3, 3), 9, 2.0), ((2, 6, 7, 7), 8, 2.0),
            ((1, 4, 4, 4), 3, 1.5), ((2, 8, 4, 5), 6, 3.0)]
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        i = 0
        for shape, k, gamma in rand:
            x = f32(rng.standard_normal(shape) + 0.3)
            case(f.create_group("case%02d" % i), rng, x, k, gamma, False)
            i += 1
        for k in (3, 4):
            case(f.create_group("case%02d" % i), rng, tie_map(), k, 2.0, True)
            i += 1
        f.attrs["cases"] = i
    os.replace(tmp, OUT)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
