#!/usr/bin/python3
"""Fixtures for the MSD loss (tests/unit/test_msd.c), written from
../shared/METHODS.md ("MSD — multi-scale decoupled contrastive
distillation (our design)"), in float64 on float32 inputs.

Student side from its last-stage map F [B,C,h,w] (a leaf):
  regions: for each scale s (first 1), adaptive_avg_pool2d(F, s) (stride 0)
      or avg_pool2d(F, ceil(h/s) x ceil(w/s), stride S) (stride S > 0; scale
      1 is the global average), flattened row-major, concatenated by scale:
      P [B,R,C];
  logits space: z_s = P W^T + b  (W [K,C], b [K] leaves);
  feat space:   z_s = regions(BN(conv1x1(F)))  with the aligner's conv
      weight [D,C,1,1] and BN weight/bias [D] leaves, BN with batch
      statistics (training mode, eps 1e-5), when C != D; regions(F) when C == D.
u = normalize(z_s), v = normalize(z_t) (z_t, the teacher's, given), weights
w [B,R] given:
  L_sam = -mean_{b,r} w_br log softmax_{b'}(u_br . v_b'r / tau)[b]
  L_fea = -mean over b and the regions r of scales with more than one
          region of w_br log softmax_{r' in scale(r)}(u_br . v_br' / tau)[r]
  loss = L_sam + L_fea; gradients are of weight * loss.

Writes tests/fixtures/msd.h5 (kdpipe_kind "fixture"): caseNN groups with
  F, zt, wt, scales (i32), W, b (logits) or aw, ag, ab (feat with aligner),
  dF, dW, db / daw, dag, dab; attributes loss, sam, fea, tau, weight,
  space (0 logits, 1 feat), stride, D; root attribute cases.

Run: /usr/bin/python3 tests/gen/msd.py   (from the repository root)
"""
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as Fn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "msd.h5")
B, C, K = 4, 8, 10


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def regions(x, scales, stride):
    h, w = x.shape[2], x.shape[3]
    out = []
    for s in scales:
        if stride == 0 or s == 1:
            p = Fn.adaptive_avg_pool2d(x, s)
        else:
            p = Fn.avg_pool2d(x, (math.ceil(h / s), math.ceil(w / s)), stride)
        out.append(p.flatten(2))  # [B,C,cells]
    return torch.cat(out, 2).transpose(1, 2)  # [B,R,C]


def spans(scales, stride, h, w):
    """(first, count) of each scale's regions."""
    res, first = [], 0
    for s in scales:
        if stride == 0 or s == 1:
            n = s * s
        else:
            kh, kw = math.ceil(h / s), math.ceil(w / s)
            n = ((h - kh) // stride + 1) * ((w - kw) // stride + 1)
        res.append((first, n))
        first += n
    return res


def msd_loss(zs, zt, wt, sp, tau):
    u, v = Fn.normalize(zs, dim=2), Fn.normalize(zt, dim=2)
    n, R = zs.shape[0], zs.shape[1]
    # sample-wise: for each region r, [b, b'] = u_br . v_b'r
    sim = torch.einsum("brd,crd->rbc", u, v) / tau  # [R,B,B]
    lp = Fn.log_softmax(sim, dim=2)
    diag = torch.diagonal(lp, dim1=1, dim2=2).t()  # [B,R]
    sam = -(wt * diag).sum() / (n * R)
    fea_sum, nf = 0, 0
    for first, cnt in sp:
        if cnt < 2:
            continue
        us, vs = u[:, first:first + cnt], v[:, first:first + cnt]
        s2 = torch.einsum("brd,bqd->brq", us, vs) / tau
        d2 = torch.diagonal(Fn.log_softmax(s2, dim=2), dim1=1, dim2=2)  # [B,cnt]
        fea_sum = fea_sum - (wt[:, first:first + cnt] * d2).sum()
        nf += cnt
    fea = fea_sum / (n * nf) if nf else torch.zeros((), dtype=torch.float64)
    return sam + fea, sam, fea


def case(g, rng, space, h, w, D, scales, stride, tau, weight):
    Fm = f32(rng.standard_normal((B, C, h, w)) + 0.3)
    sp = spans(scales, stride, h, w)
    R = sum(c for _, c in sp)
    zt = f32(2 * rng.standard_normal((B, R, D)))
    wt = f32(np.where(rng.random((B, R)) < 0.3, 2.0, 1.0))
    wt[:, 0] = 1
    t = lambda a: torch.from_numpy(a).double().requires_grad_(True)
    Ft = t(Fm)
    data = {"F": Fm, "zt": zt, "wt": wt, "scales": np.array(scales, dtype=np.int32)}
    leaves = {}
    if space == 0:
        leaves["W"] = f32(0.3 * rng.standard_normal((D, C)))
        leaves["b"] = f32(0.1 * rng.standard_normal(D))
        L = {k: t(v) for k, v in leaves.items()}
        zs = regions(Ft, scales, stride) @ L["W"].t() + L["b"]
    elif C != D:
        leaves["aw"] = f32(rng.standard_normal((D, C, 1, 1)) * math.sqrt(2.0 / D))
        leaves["ag"] = f32(1 + 0.2 * rng.standard_normal(D))
        leaves["ab"] = f32(0.1 * rng.standard_normal(D))
        L = {k: t(v) for k, v in leaves.items()}
        y = Fn.batch_norm(Fn.conv2d(Ft, L["aw"]), None, None, L["ag"], L["ab"], training=True, eps=1e-5)
        zs = regions(y, scales, stride)
    else:
        L = {}
        zs = regions(Ft, scales, stride)
    loss, sam, fea = msd_loss(zs, torch.from_numpy(zt).double(), torch.from_numpy(wt).double(), sp, tau)
    (weight * loss).backward()
    data["dF"] = f32(Ft.grad.numpy())
    for k, v in L.items():
        data[k] = leaves[k]
        data["d" + k] = f32(v.grad.numpy())
    for k, v in data.items():
        g.create_dataset(k, data=v)
    g.attrs.update({"loss": float(loss), "sam": float(sam), "fea": float(fea), "tau": tau, "weight": weight,
                    "space": space, "stride": stride, "D": D})
    return R, float(loss)


def main():
    rng = np.random.default_rng(20261201)
    tmp = OUT + ".tmp"
    # space, h, w, D, scales, stride, tau, weight
    cases = [(0, 7, 7, K, [1, 2, 4], 0, 0.1, 1.0),   # the default: 21 regions of a 7x7 map
             (0, 4, 4, K, [1, 2, 4], 0, 0.1, 0.5),   # 4x4 at scale 4: single-position cells
             (0, 7, 7, K, [1, 2, 4], 0, 0.5, 2.0),   # a softer temperature
             (0, 4, 4, K, [1, 2], 1, 0.1, 1.0),      # sliding 2x2 windows, stride 1: 1 + 9 regions
             (1, 7, 7, 6, [1, 2, 4], 0, 0.1, 1.0),   # pooled features through the aligner 8 -> 6
             (1, 4, 4, 12, [1, 2, 4], 0, 0.2, 0.7),  # aligner 8 -> 12
             (1, 7, 7, C, [1, 2, 4], 0, 0.1, 1.0)]   # equal widths: no aligner
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        for i, c in enumerate(cases):
            R, loss = case(f.create_group("case%02d" % i), rng, *c)
            print("case%02d space %d %dx%d D %d R %d loss %.6f" % (i, c[0], c[1], c[2], c[3], R, loss))
        f.attrs["cases"] = len(cases)
    os.replace(tmp, OUT)
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
