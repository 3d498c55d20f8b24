#!/usr/bin/python3
"""Fixtures for the supervised distillation losses kd and dkd
(tests/unit/test_sup_kd.c), written from ../shared/METHODS.md ("Supervised
distillation"), in float64 on float32 inputs, gradients by autograd:

  KD (RepDistiller): L = T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), summed
      over classes, mean over the batch.
  DKD (mdistiller): p = softmax(z/T); b = [p_y, sum of the other p] (the
      target-class binary distribution); the non-target distribution is
      softmax(z/T - 1000 * onehot(y)), the target class pushed out by a
      large constant as mdistiller does; TCKD = KL(b_t || b_s), NCKD =
      KL(q_t || q_s), each summed and divided by the batch size;
      L = f * T^2 * (alpha TCKD + beta NCKD), f = min(epoch1 / warmup, 1)
      with mdistiller's 1-based epoch epoch1 = the frame's 0-based epoch + 1.

The gradient stored is that of weight * L wrt the student's logits z_s.

Writes tests/fixtures/sup_kd.h5 (kdpipe_kind "fixture"):
  kd/caseNN: zs, zt f32 [B,K], grad f32 [B,K]; attributes loss (unweighted),
      T, weight, confident (1 if row 0's teacher puts > 1 - 1e-6 on one class)
  dkd/caseNN: zs, zt f32 [B,K], y i32 [B], grad f32 [B,K]; attributes loss
      (unweighted, with the warm-up factor), T, alpha, beta, weight, epoch
      (0-based), warmup, factor, confident
  root attributes kd_cases, dkd_cases.

Run: /usr/bin/python3 tests/gen/sup_kd.py   (from the repository root)
"""
import os

import h5py
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "sup_kd.h5")
B, K = 6, 10


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def kl_sum(log_q, p):
    """sum over everything of p (log p - log_q), with 0 log 0 = 0."""
    return torch.where(p > 0, p * (torch.log(torch.where(p > 0, p, torch.ones_like(p))) - log_q),
                       torch.zeros_like(p)).sum()


def kd_loss(zs, zt, T):
    pt = torch.softmax(zt / T, dim=1)
    log_ps = torch.log_softmax(zs / T, dim=1)
    return T * T * kl_sum(log_ps, pt) / zs.shape[0]


def binary(p, onehot):
    """[p_y, sum of the non-target p] per row."""
    return torch.stack([(p * onehot).sum(1), (p * (1 - onehot)).sum(1)], dim=1)


def dkd_loss(zs, zt, y, T, alpha, beta):
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y).long(), K).double()
    bs = binary(torch.softmax(zs / T, dim=1), onehot)
    bt = binary(torch.softmax(zt / T, dim=1), onehot)
    tckd = kl_sum(torch.log(bs), bt) / zs.shape[0]
    qt = torch.softmax(zt / T - 1000.0 * onehot, dim=1)
    log_qs = torch.log_softmax(zs / T - 1000.0 * onehot, dim=1)
    nckd = kl_sum(log_qs, qt) / zs.shape[0]
    return T * T * (alpha * tckd + beta * nckd)


def logits(rng, y, confident):
    zs = 2.0 * rng.standard_normal((B, K))
    zt = 3.0 * rng.standard_normal((B, K))
    zt[np.arange(B), y] += 2.0  # a teacher that mostly agrees with the label
    if confident:  # row 0: the teacher is sure of its label, 1 - p_y ~ 1e-8 at T = 4
        zt[0] = rng.standard_normal(K)
        zt[0, y[0]] = 80.0
        zs[1, y[1]] = 40.0  # and a student sure of row 1's
    return f32(zs), f32(zt)


def is_confident(zt, T):
    return int(torch.softmax(torch.from_numpy(zt).double() / T, dim=1)[0].max() > 1 - 1e-6)


def kd_case(g, rng, T, weight, confident):
    y = rng.integers(0, K, B)
    zs, zt = logits(rng, y, confident)
    st = torch.from_numpy(zs).double().requires_grad_(True)
    loss = kd_loss(st, torch.from_numpy(zt).double(), T)
    (weight * loss).backward()
    for k, v in (("zs", zs), ("zt", zt), ("grad", f32(st.grad.numpy()))):
        g.create_dataset(k, data=v)
    g.attrs["loss"], g.attrs["T"], g.attrs["weight"] = float(loss), T, weight
    g.attrs["confident"] = is_confident(zt, T)


def dkd_case(g, rng, T, alpha, beta, weight, epoch, warmup, confident):
    y = rng.integers(0, K, B).astype(np.int32)
    zs, zt = logits(rng, y, confident)
    factor = min((epoch + 1) / warmup, 1.0)  # mdistiller's epochs count from 1
    st = torch.from_numpy(zs).double().requires_grad_(True)
    loss = factor * dkd_loss(st, torch.from_numpy(zt).double(), y, T, alpha, beta)
    (weight * loss).backward()
    for k, v in (("zs", zs), ("zt", zt), ("y", y), ("grad", f32(st.grad.numpy()))):
        g.create_dataset(k, data=v)
    a = g.attrs
    a["loss"], a["T"], a["alpha"], a["beta"], a["weight"] = float(loss), T, alpha, beta, weight
    a["epoch"], a["warmup"], a["factor"] = epoch, warmup, factor
    a["confident"] = is_confident(zt, T)


def main():
    rng = np.random.default_rng(20260114)
    tmp = OUT + ".tmp"
    kd = [(4.0, 0.9, False), (4.0, 0.9, True), (1.0, 1.0, False), (2.0, 0.5, True), (8.0, 1.0, False)]
    # T, alpha, beta, weight, epoch (0-based), warmup, confident
    dkd = [(4.0, 1.0, 8.0, 1.0, 0, 20, False), (4.0, 1.0, 8.0, 1.0, 9, 20, True), (4.0, 1.0, 8.0, 1.0, 25, 20, True),
           (2.0, 0.5, 2.0, 0.7, 19, 20, False), (1.0, 2.0, 1.0, 1.0, 0, 1, True), (8.0, 1.0, 8.0, 1.0, 3, 5, False)]
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        for i, c in enumerate(kd):
            kd_case(f.create_group("kd/case%02d" % i), rng, *c)
        for i, c in enumerate(dkd):
            dkd_case(f.create_group("dkd/case%02d" % i), rng, *c)
        f.attrs["kd_cases"], f.attrs["dkd_cases"] = len(kd), len(dkd)
    os.replace(tmp, OUT)
    with h5py.File(OUT) as f:
        for fam in ("kd", "dkd"):
            for i in range(f.attrs[fam + "_cases"]):
                a = f["%s/case%02d" % (fam, i)].attrs
                print("%s case%02d T %g loss %.6f factor %s confident %d" %
                      (fam, i, a["T"], a["loss"], a.get("factor", "-"), a["confident"]))
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
