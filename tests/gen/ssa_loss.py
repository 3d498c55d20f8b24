#!/usr/bin/python3
"""Fixtures for SSA's dense term (lib/kd_ssa_loss.h, tests/unit/test_ssa_loss.c),
written from ../shared/METHODS.md ("SSA — sparse spatial aggregation
contrastive distillation (our design)"), in float64 on float32 inputs.

Student stage map F [B,C,hs,ws] (a leaf), teacher map T [B,D,ht,wt] of the
same view, aligner leaves aw [D,C,1,1], ag, ab [D]:
  A = batch_norm(conv2d(F, aw), ag, ab) with batch statistics (eps 1e-5);
  grid (h, w) = (max(hs, ht), max(ws, wt)); a map of another size is
      F.interpolate(mode="bilinear", align_corners=False)-resized to it
      (the student's after the aligner, with gradient);
  s_i = normalize(A_i), t_i = normalize(T_i) over channels;
  G = s^T s; kept(i) = i, then the k-1 other j by decreasing G_ij (ties to
      the lower j); A_ij = relu(G_ij)^gamma on kept(i);
      y_i = normalize(sum_j A_ij s_j / sum_j A_ij);
  negatives: p_b = normalize(mean over the teacher's own positions of T_b);
      in-batch (Q = 0) image b uses p_b' for b' != b, else the Q given rows
      of `queue` [Q,D];
  loss = mean_{b,i} -log softmax([y_bi.t_bi, y_bi.neg...] / tau)[0];
  gradients of weight * loss.

Writes tests/fixtures/ssa_loss.h5 (kdpipe_kind "fixture"): caseNN groups with
  F, T, aw, ag, ab, queue (Q > 0), pool f32 [B,D], dF, daw, dag, dab;
  attributes loss, k, gamma, tau, Q, weight; root attribute cases.

Run: /usr/bin/python3 tests/gen/ssa_loss.py   (from the repository root)
"""
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as Fn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ssa_loss.h5")
C, D = 8, 12


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def aggregate(x, k, gamma):
    B, Cx, h, w = x.shape
    n = h * w
    s = Fn.normalize(x.reshape(B, Cx, n), dim=1)
    G = s.transpose(1, 2) @ s
    Gs = G.detach().clone()
    Gs[:, torch.arange(n), torch.arange(n)] = float("inf")  # j = i always kept
    kept = torch.sort(Gs, dim=2, descending=True, stable=True).indices[:, :, :min(k, n)]
    mask = torch.zeros_like(G).scatter_(2, kept, 1.0)
    A = torch.relu(G).pow(gamma) * mask
    agg = torch.einsum("bij,bcj->bci", A, s) / A.sum(2)[:, None, :]
    return Fn.normalize(agg, dim=1)  # [B,C,n]


def ssa_loss(Ft, T, aw, ag, ab, queue, k, gamma, tau):
    B = Ft.shape[0]
    h, w = max(Ft.shape[2], T.shape[2]), max(Ft.shape[3], T.shape[3])
    A = Fn.batch_norm(Fn.conv2d(Ft, aw), None, None, ag, ab, training=True, eps=1e-5)
    if A.shape[2:] != (h, w):
        A = Fn.interpolate(A, size=(h, w), mode="bilinear", align_corners=False)
    Tr = T if T.shape[2:] == (h, w) else Fn.interpolate(T, size=(h, w), mode="bilinear", align_corners=False)
    y = aggregate(A, k, gamma)  # [B,D,n]
    t = Fn.normalize(Tr.reshape(B, D, h * w), dim=1)
    pool = Fn.normalize(T.mean(dim=(2, 3)), dim=1)  # [B,D]
    pos = (y * t).sum(1)  # [B,n]
    total = 0
    for b in range(B):
        negs = queue if queue is not None else torch.cat([pool[:b], pool[b + 1:]])
        logits = torch.cat([pos[b][:, None], y[b].t() @ negs.t()], 1) / tau  # [n,1+M]
        total = total - Fn.log_softmax(logits, dim=1)[:, 0].sum()
    return total / (B * h * w), pool


def case(g, rng, B, hs, ws, ht, wt, k, gamma, tau, Q, weight):
    t = lambda a: torch.from_numpy(a).double().requires_grad_(True)
    data = {"F": f32(rng.standard_normal((B, C, hs, ws)) + 0.2),
            # a shared component makes the teacher's positions of one image alike, as real maps are
            "T": f32(rng.standard_normal((B, D, ht, wt)) + rng.standard_normal((B, D, 1, 1))),
            "aw": f32(rng.standard_normal((D, C, 1, 1)) * math.sqrt(2.0 / D)),
            "ag": f32(1 + 0.2 * rng.standard_normal(D)), "ab": f32(0.1 * rng.standard_normal(D))}
    queue = None
    if Q:
        q = rng.standard_normal((Q, D))
        data["queue"] = f32(q / np.linalg.norm(q, axis=1, keepdims=True))
        queue = torch.from_numpy(data["queue"]).double()
    L = {n: t(data[n]) for n in ("F", "aw", "ag", "ab")}
    loss, pool = ssa_loss(L["F"], torch.from_numpy(data["T"]).double(), L["aw"], L["ag"], L["ab"], queue, k, gamma,
                          tau)
    (weight * loss).backward()
    data["pool"] = f32(pool.numpy())
    for n, v in L.items():
        data["d" + n] = f32(v.grad.numpy())
    for n, v in data.items():
        g.create_dataset(n, data=v)
    g.attrs.update({"loss": float(loss), "k": k, "gamma": gamma, "tau": tau, "Q": Q, "weight": weight})
    return float(loss)


def main():
    rng = np.random.default_rng(20261203)
    tmp = OUT + ".tmp"
    # B, hs, ws, ht, wt, k, gamma, tau, Q, weight
    cases = [(4, 4, 4, 2, 2, 8, 2.0, 0.2, 0, 1.0),   # the defaults; the teacher 2x2 resized to 4x4
             (4, 2, 2, 4, 4, 3, 2.0, 0.2, 0, 0.7),   # the student resized, gradient through the resize
             (4, 4, 4, 4, 4, 5, 1.5, 0.5, 6, 1.0),   # same grid, a queue of 6 negatives
             (3, 4, 3, 2, 3, 8, 2.0, 0.2, 0, 2.0),   # fewer images than planned, non-square, one side resized
             (4, 3, 3, 3, 3, 1, 2.0, 0.2, 5, 1.0)]   # k = 1: y_i = s_i
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        for i, c in enumerate(cases):
            loss = case(f.create_group("case%02d" % i), rng, *c)
            print("case%02d B %d student %dx%d teacher %dx%d k %d Q %d loss %.6f" % (i, *c[:6], c[8], loss))
        f.attrs["cases"] = len(cases)
    os.replace(tmp, OUT)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
