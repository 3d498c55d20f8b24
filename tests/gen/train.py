#!/usr/bin/python3
"""Fixtures for the training side (tests/unit/test_train.c): PyTorch 1.13's
cross-entropy, MoCo v2's InfoNCE with a queue, and three SGD steps of a
small ResNet with batch norm in training mode.

Weights and inputs are filled from their names with tests/gen/models.py's
integer hash (the C test has the twin), so the file stays small.

Writes tests/fixtures/train.h5 (kdpipe_kind "fixture"):
  ce/logits f32 [8,10], ce/y i32 [8], ce/grad f32 [8,10]; attribute loss
      (mean reduction; grad = d loss / d logits)
  moco/q f32 [8,16] (raw, before L2 normalisation), moco/k f32 [8,16]
      (normalised keys), moco/queue f32 [32,16] (normalised), moco/grad
      f32 [8,16] = d loss / d q; attributes loss, tau
  sgd: resnet20, 1 input channel, 10 classes, 8 images 16x16 (the pattern
      "input:sgd" times sqrt(12)), labels i % 10; three steps of
      torch.optim.SGD(lr 0.1, momentum 0.9, weight_decay 5e-4) on the same
      batch, BN in training mode, float64.  attributes lr, momentum, wd,
      names (parameter names in order); datasets losses f64 [3],
      pss f64 [P] (sum of squares of each final parameter), pproj f64 [P]
      (final parameter projected on the pattern "proj:"+name),
      dss f64 [P] (sum of squares of final - initial),
      fc_weight f32 [10,64] (final), rm_<name> running stats after the steps.
  clip/a f32 [35], clip/b f32 [13]: two gradients; clip/small and
      clip/large: torch.nn.utils.clip_grad_norm_ at max_norm 0.5 and 1e3
      (attributes max_norm, norm = the returned total norm; datasets a, b =
      the gradients after it).

Run: /usr/bin/python3 tests/gen/train.py   (from the repository root)
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import build, fill, fnv1a, pattern  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train.h5")


def case_ce(f):
    g = f.create_group("ce")
    z = (pattern(fnv1a("ce:logits"), 80) * 8).astype(np.float32).reshape(8, 10)
    y = (np.arange(8) * 3 % 10).astype(np.int32)
    zt = torch.from_numpy(z).double().requires_grad_(True)
    loss = F.cross_entropy(zt, torch.from_numpy(y).long())
    loss.backward()
    g.create_dataset("logits", data=z)
    g.create_dataset("y", data=y)
    g.create_dataset("grad", data=zt.grad.float().numpy())
    g.attrs["loss"] = float(loss)


def case_moco(f):
    g = f.create_group("moco")
    n, e, kq, tau = 8, 16, 32, 0.2
    q = (pattern(fnv1a("moco:q"), n * e) * 4).astype(np.float32).reshape(n, e)
    k = pattern(fnv1a("moco:k"), n * e).reshape(n, e)
    k = (k / np.linalg.norm(k, axis=1, keepdims=True)).astype(np.float32)
    qu = pattern(fnv1a("moco:queue"), kq * e).reshape(kq, e)
    qu = (qu / np.linalg.norm(qu, axis=1, keepdims=True)).astype(np.float32)
    qt = torch.from_numpy(q).double().requires_grad_(True)
    qn = F.normalize(qt, dim=1)
    kt, qut = torch.from_numpy(k).double(), torch.from_numpy(qu).double()
    lpos = (qn * kt).sum(1, keepdim=True)
    lneg = qn @ qut.t()
    logits = torch.cat([lpos, lneg], 1) / tau
    loss = F.cross_entropy(logits, torch.zeros(n, dtype=torch.long))
    loss.backward()
    for name, v in (("q", q), ("k", k), ("queue", qu), ("grad", qt.grad.float().numpy())):
        g.create_dataset(name, data=v)
    g.attrs["loss"], g.attrs["tau"] = float(loss), tau


def case_sgd(f):
    g = f.create_group("sgd")
    N, H, W, lr, mom, wd = 8, 16, 16, 0.1, 0.9, 5e-4
    m, _, _ = build("resnet20", 1, 10)
    fill(m)
    m.double().train(True)
    x = torch.from_numpy((pattern(fnv1a("input:sgd"), N * H * W) * np.sqrt(12.0)).reshape(N, 1, H, W))
    y = torch.from_numpy(np.arange(N) % 10).long()
    names = [k for k, _ in m.named_parameters()]
    init = {k: p.detach().clone() for k, p in m.named_parameters()}
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    pss, pproj, dss = [], [], []
    for k, p in m.named_parameters():
        v = p.detach().numpy().ravel()
        pss.append(float((v * v).sum()))
        pproj.append(float((v * pattern(fnv1a("proj:" + k), v.size)).sum()))
        d = v - init[k].numpy().ravel()
        dss.append(float((d * d).sum()))
    g.attrs["lr"], g.attrs["momentum"], g.attrs["wd"] = lr, mom, wd
    g.attrs["N"], g.attrs["H"], g.attrs["W"] = N, H, W
    g.attrs["names"] = names
    g.create_dataset("losses", data=np.array(losses))
    g.create_dataset("pss", data=np.array(pss))
    g.create_dataset("pproj", data=np.array(pproj))
    g.create_dataset("dss", data=np.array(dss))
    g.create_dataset("fc_weight", data=m.fc.weight.detach().float().numpy())
    for k, b in m.named_buffers():
        if k.endswith("running_mean") or k.endswith("running_var"):
            g.create_dataset("rm_" + k, data=b.float().numpy())


def case_clip(f):
    """torch.nn.utils.clip_grad_norm_ over two float32 gradients, once
    clipping (max_norm 0.5) and once not (max_norm 1e3)."""
    g = f.create_group("clip")
    a = (pattern(fnv1a("clip:a"), 35) * 3).astype(np.float32)
    b = (pattern(fnv1a("clip:b"), 13) * 3).astype(np.float32)
    g.create_dataset("a", data=a)
    g.create_dataset("b", data=b)
    for name, mx in (("small", 0.5), ("large", 1e3)):
        ps = [torch.nn.Parameter(torch.zeros(35)), torch.nn.Parameter(torch.zeros(13))]
        ps[0].grad, ps[1].grad = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
        norm = torch.nn.utils.clip_grad_norm_(ps, mx)
        h = g.create_group(name)
        h.attrs["max_norm"], h.attrs["norm"] = mx, float(norm)
        h.create_dataset("a", data=ps[0].grad.numpy())
        h.create_dataset("b", data=ps[1].grad.numpy())


def main():
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        case_ce(f)
        case_moco(f)
        case_sgd(f)
        case_clip(f)
    os.replace(tmp, OUT)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
