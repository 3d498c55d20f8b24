#!/usr/bin/python3
"""Fixture of the CRD loss (tests/unit/test_crd.c), written from
../shared/METHODS.md ("Supervised distillation", CRD) and the NCE form of
lib/loss/kd_loss_crd.h, in float64 on float32 inputs, with a FIXED set of
negatives and, in some cases, a given normaliser Z:

  v_s = n(W_s f_s + b_s), v_t = n(W_t f_t + b_t);
  for sample i, rows r_0 = idx[i] (its own) and r_1..r_K = neg[i]:
    P_s[i,j] = exp(M_t[r_j] . v_s[i] / tau) / Z_s   (student anchor, teacher bank)
    P_t[i,j] = exp(M_s[r_j] . v_t[i] / tau) / Z_t   (teacher anchor, student bank)
  Z unset: Z = mean over the batch's B (K+1) exponentials x N, then constant;
  c = K / N, per side
    L = -1/B sum_i [log(P[i,0] / (P[i,0] + c + 1e-7)) + sum_j>0 log(c / (P[i,j] + c + 1e-7))]
  L_crd = L_s + L_t; the gradient is weight * dL_crd / d(f_s, W_s, b_s, W_t, b_t),
  f_t gets none.  After the step: M[idx[i]] = n(m M[idx[i]] + (1 - m) v[i]) for
  both banks (v_s into M_s, v_t into M_t).

Writes tests/fixtures/crd.h5 (kdpipe_kind "fixture"), groups caseNN:
  fs f32 [B,ds], ft f32 [B,dt], Ws f32 [E,ds], bs f32 [E], Wt f32 [E,dt],
  bt f32 [E], bank_s, bank_t f32 [N,E] (before), idx i64 [B], neg i64 [B,K];
  results d_fs, gWs, gbs, gWt, gbt (weighted), bank_s_after, bank_t_after;
  attributes z_s, z_t (given, or -1: set from this batch), z_s_out, z_t_out,
  loss (unweighted), weight, tau, mom.  Root attribute cases.

Run: /usr/bin/python3 tests/gen/crd.py   (from the repository root)
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "crd.h5")
B, N, K, DS, DT, E = 4, 32, 8, 16, 24, 32
NCLASS = 4
EPS = 1e-7


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def side(anchor, bank, rows, Z, tau):
    """One NCE side: the anchors against bank rows [B, K+1]; returns (loss, Z)."""
    w = bank[rows]                                  # [B, K+1, E], no gradient into the bank
    e = torch.exp(torch.einsum("bke,be->bk", w, anchor) / tau)
    if Z < 0:
        Z = float(e.mean().detach()) * N
    p = e / Z
    c = K / N
    pos = torch.log(p[:, 0] / (p[:, 0] + c + EPS))
    neg = torch.log(c / (p[:, 1:] + c + EPS))
    return -(pos.sum() + neg.sum()) / anchor.shape[0], Z


def update(bank, rows, v, mom):
    new = bank.copy()
    u = bank[rows] * mom + v * (1 - mom)
    new[rows] = u / np.linalg.norm(u, axis=1, keepdims=True)
    return new


def case(g, rng, weight, z, normalised_banks, tau=0.07, mom=0.5):
    labels = rng.integers(0, NCLASS, N)
    idx = rng.choice(N, B, replace=False)
    neg = np.stack([rng.choice(np.flatnonzero(labels != labels[r]), K, replace=True) for r in idx])
    fs, ft = f32(rng.standard_normal((B, DS))), f32(2 * rng.standard_normal((B, DT)))
    bs_, bt_ = 1 / np.sqrt(DS), 1 / np.sqrt(DT)
    Ws, bs = f32(rng.uniform(-bs_, bs_, (E, DS))), f32(rng.uniform(-bs_, bs_, E))
    Wt, bt = f32(rng.uniform(-bt_, bt_, (E, DT))), f32(rng.uniform(-bt_, bt_, E))
    stdv = 1 / np.sqrt(E / 3)
    Ms, Mt = rng.uniform(-stdv, stdv, (N, E)), rng.uniform(-stdv, stdv, (N, E))
    if normalised_banks:  # as after some steps, with positives pulled near the anchors
        Ms, Mt = Ms / np.linalg.norm(Ms, axis=1, keepdims=True), Mt / np.linalg.norm(Mt, axis=1, keepdims=True)
    Ms, Mt = f32(Ms), f32(Mt)

    T = {k: torch.from_numpy(v).double().requires_grad_(True) for k, v in
         dict(fs=fs, Ws=Ws, bs=bs, Wt=Wt, bt=bt).items()}
    ftt = torch.from_numpy(ft).double()
    vs = F.normalize(T["fs"] @ T["Ws"].t() + T["bs"], dim=1)
    vt = F.normalize(ftt @ T["Wt"].t() + T["bt"], dim=1)
    rows = torch.from_numpy(np.concatenate([idx[:, None], neg], 1))
    ls, zs = side(vs, torch.from_numpy(Mt).double(), rows, z[0], tau)
    lt, zt = side(vt, torch.from_numpy(Ms).double(), rows, z[1], tau)
    loss = ls + lt
    (weight * loss).backward()

    out = dict(fs=fs, ft=ft, Ws=Ws, bs=bs, Wt=Wt, bt=bt, bank_s=Ms, bank_t=Mt,
               idx=idx.astype(np.int64), neg=neg.astype(np.int64),
               d_fs=f32(T["fs"].grad), gWs=f32(T["Ws"].grad), gbs=f32(T["bs"].grad),
               gWt=f32(T["Wt"].grad), gbt=f32(T["bt"].grad),
               bank_s_after=f32(update(Ms.astype(np.float64), idx, vs.detach().numpy(), mom)),
               bank_t_after=f32(update(Mt.astype(np.float64), idx, vt.detach().numpy(), mom)))
    for k, v in out.items():
        g.create_dataset(k, data=v)
    g.attrs.update(dict(z_s=z[0], z_t=z[1], z_s_out=zs, z_t_out=zt, loss=float(loss), weight=weight, tau=tau,
                        mom=mom))
    return float(loss), zs, zt


def main():
    rng = np.random.default_rng(14)
    cases = [(0.8, (-1.0, -1.0), False),       # Z from this batch, RepDistiller's initial banks
             (0.8, (2.5, 40.0), True),         # a given Z, normalised banks
             (1.0, (0.3, 0.05), True),         # Z small: every P large, the negatives dominate
             (0.8, (-1.0, -1.0), True)]
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        for i, c in enumerate(cases):
            l, zs, zt = case(f.create_group("case%02d" % i), rng, *c)
            print("case%02d loss %.6f z_s %.4g z_t %.4g" % (i, l, zs, zt))
        f.attrs["cases"] = len(cases)
    os.replace(tmp, OUT)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
