#!/usr/bin/python3
"""Fixtures for the self-supervised distillation losses (tests/unit/
test_ssl_distill.c), written from ../shared/METHODS.md ("Self-supervised
distillation"), in float64 on float32 inputs:

  DisCo's term on one view: q = normalize(emb), L_v = mean_b |t_b - q_b|^2
      (squared distance summed over E); the gradient is weight * dL_v/d emb.
  SEED: s = normalize(s_raw), p_T = softmax([t.t, t.Q]/tau_T),
      p_S = softmax([s.t, s.Q]/tau_S), L = mean_b -sum p_T log p_S; the
      gradient is weight * dL/d s_raw (the teacher side gets none).

Writes tests/fixtures/ssl_distill.h5 (kdpipe_kind "fixture"):
  disco/caseNN: emb0, emb1 f32 [n,E] (raw), t0, t1 f32 [n,E] (normalised),
      grad0, grad1 f32 [n,E]; attributes loss0, loss1 (unweighted), weight
  seed/caseNN: s f32 [n,E] (raw), t f32 [n,E], queue f32 [K,E] (normalised),
      grad f32 [n,E]; attributes loss, tau_s, tau_t, weight, pt_peak (the
      least peaked row's largest teacher probability: well below 1 says the
      teacher's softmax is not one-hot there)
  root attributes disco_cases, seed_cases.

Some cases put the student next to the teacher (small distances, where the
difference of O(1) terms needs double accumulation) and some queue rows next
to the teacher's embedding, so that at tau_T = 1e-4 p_T is not one-hot.

Run: /usr/bin/python3 tests/gen/ssl_distill.py   (from the repository root)
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ssl_distill.h5")
N, E, K = 6, 16, 32


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def disco_term(emb, t):
    q = F.normalize(emb, dim=1)
    return ((t - q) ** 2).sum(1).mean()


def disco_case(g, rng, weight, near, scale):
    t0, t1 = f32(unit(rng.standard_normal((N, E)))), f32(unit(rng.standard_normal((N, E))))
    if near:  # the student almost the teacher: distances ~1e-4
        e0 = f32(scale * (t0 + near * rng.standard_normal((N, E))))
        e1 = f32(scale * (t1 + near * rng.standard_normal((N, E))))
    else:
        e0, e1 = f32(scale * rng.standard_normal((N, E))), f32(scale * rng.standard_normal((N, E)))
    out = {"emb0": e0, "emb1": e1, "t0": t0, "t1": t1}
    for v, (e, t) in enumerate(((e0, t0), (e1, t1))):
        et = torch.from_numpy(e).double().requires_grad_(True)
        loss = disco_term(et, torch.from_numpy(t).double())
        (weight * loss).backward()
        out["grad%d" % v] = f32(et.grad.numpy())
        g.attrs["loss%d" % v] = float(loss)
    for k, v in out.items():
        g.create_dataset(k, data=v)
    g.attrs["weight"] = weight


def seed_loss(s_raw, t, Q, tau_s, tau_t):
    s = F.normalize(s_raw, dim=1)
    lt = torch.cat([(t * t).sum(1, keepdim=True), t @ Q.t()], 1) / tau_t
    ls = torch.cat([(s * t).sum(1, keepdim=True), s @ Q.t()], 1) / tau_s
    pt = F.softmax(lt, dim=1)
    return -(pt * F.log_softmax(ls, dim=1)).sum(1).mean(), pt


def seed_case(g, rng, weight, tau_s, tau_t, near_queue):
    t = f32(unit(rng.standard_normal((N, E))))
    s = f32(2.5 * rng.standard_normal((N, E)))
    Q = unit(rng.standard_normal((K, E)))
    if near_queue:  # queue rows i next to t_i: t.t - t.q ~ near_queue^2 / 2
        Q[:N] = unit(t + near_queue * rng.standard_normal((N, E)))
    Q = f32(Q)
    st = torch.from_numpy(s).double().requires_grad_(True)
    loss, pt = seed_loss(st, torch.from_numpy(t).double(), torch.from_numpy(Q).double(), tau_s, tau_t)
    (weight * loss).backward()
    p = pt.detach().numpy()
    for k, v in (("s", s), ("t", t), ("queue", Q), ("grad", f32(st.grad.numpy()))):
        g.create_dataset(k, data=v)
    g.attrs["loss"], g.attrs["tau_s"], g.attrs["tau_t"], g.attrs["weight"] = float(loss), tau_s, tau_t, weight
    g.attrs["pt_peak"] = float(p.max(1).min())


def main():
    rng = np.random.default_rng(20260113)
    tmp = OUT + ".tmp"
    disco = [(1.0, 0, 1.0), (32.0, 0, 3.0), (0.5, 1e-2, 1.0), (32.0, 1e-4, 0.7), (1.0, 0, 1e-3)]
    seed = [(1.0, 0.2, 1e-4, 1e-2), (1.0, 0.2, 1e-4, 0), (0.5, 0.2, 0.05, 0), (2.0, 0.1, 0.05, 0.3),
            (1.0, 0.2, 0.5, 0), (1.0, 1.0, 1e-4, 3e-3)]
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        for i, c in enumerate(disco):
            disco_case(f.create_group("disco/case%02d" % i), rng, *c)
        for i, c in enumerate(seed):
            seed_case(f.create_group("seed/case%02d" % i), rng, *c)
        f.attrs["disco_cases"], f.attrs["seed_cases"] = len(disco), len(seed)
    os.replace(tmp, OUT)
    with h5py.File(OUT) as f:
        for i in range(len(seed)):
            a = f["seed/case%02d" % i].attrs
            print("seed case%02d tau_t %g loss %.6f pt_peak %.4f" % (i, a["tau_t"], a["loss"], a["pt_peak"]))
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
