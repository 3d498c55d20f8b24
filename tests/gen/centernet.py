#!/usr/bin/python3
"""Reference numbers for lib/eval/kd_centernet.c (kd_det.h), written from
CenterNet's description (Zhou et al. 2019, "Objects as Points") and its
published rules (gaussian_radius, draw_umich_gaussian, _neg_loss,
RegL1Loss, ctdet_decode), in NumPy and PyTorch (autograd for gradients).

Writes tests/fixtures/centernet.h5 (root attributes kdpipe_format=1,
kdpipe_kind="fixture"): groups radius, splat, targets, focal, regl1, segce,
segup, decode, bilinear, head_skip.  Run: /usr/bin/python3 tests/gen/centernet.py
"""
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "centernet.h5")
torch.manual_seed(16)
rs = np.random.RandomState(16)


def radius(h, w, mo=0.7):
    # the three cases of CenterNet's gaussian_radius, roots as its code takes them
    b1 = h + w
    c1 = w * h * (1 - mo) / (1 + mo)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - mo) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * mo
    b3 = -2 * mo * (h + w)
    c3 = (mo - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def splat(heat, cx, cy, r):
    d = 2 * r + 1
    sigma = d / 6
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    H, W = heat.shape
    l, ri = min(cx, r), min(W - cx, r + 1)
    t, b = min(cy, r), min(H - cy, r + 1)
    hm = heat[cy - t:cy + b, cx - l:cx + ri]
    gm = g[r - t:r + b, r - l:r + ri].astype(np.float32)
    np.maximum(hm, gm, out=hm)


def targets(boxes, labels, K, H, W, S):
    heat = np.zeros((K, H, W), np.float32)
    ind, wh, off = [], [], []
    for (x, y, bw, bh), k in zip(boxes, labels):
        w, h = bw / S, bh / S
        cx, cy = (x + bw / 2) / S, (y + bh / 2) / S
        ix, iy = min(int(math.floor(cx)), W - 1), min(int(math.floor(cy)), H - 1)
        r = max(0, int(radius(math.ceil(h), math.ceil(w))))
        splat(heat[k], ix, iy, r)
        ind.append(iy * W + ix)
        wh.append((w, h))
        off.append((cx - ix, cy - iy))
    return heat, np.array(ind, np.int32), np.array(wh, np.float32), np.array(off, np.float32)


def focal(x, gt):
    p = torch.clamp(torch.sigmoid(x), 1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = gt.lt(1).float()
    pl = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    nl = (torch.log(1 - p) * p ** 2 * (1 - gt) ** 4 * neg).sum()
    npos = pos.sum()
    return -nl if npos == 0 else -(pl + nl) / npos


def put(g, name, v):
    g.create_dataset(name, data=np.asarray(v))


def main():
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        hw = np.array([[1, 1], [2, 3], [5, 2], [7.5, 9], [16, 4], [3.2, 12.8]], np.float64)
        G = f.create_group("radius")
        put(G, "hw", hw)
        put(G, "r", [radius(h, w) for h, w in hw])

        G = f.create_group("splat")
        heat = np.zeros((9, 11), np.float32)
        cases = np.array([[2, 3, 2], [0, 0, 1], [10, 8, 3], [5, 4, 0], [6, 5, 4]], np.int32)
        for cx, cy, r in cases:
            splat(heat, cx, cy, r)
        put(G, "cases", cases)
        put(G, "heat", heat)

        # targets at stride 4 of a 40x48 image: K=3, H=10, W=12
        K, S, Hi, Wi = 3, 4, 40, 48
        H, W = Hi // S, Wi // S
        boxes = np.array([[3, 5, 14, 9], [20.5, 1, 7, 30], [0, 0, 48, 40], [30, 22, 17.5, 17.25],
                          [44, 35, 4, 5]], np.float32)
        labels = np.array([0, 2, 1, 2, 0], np.int32)
        heat, ind, wh, off = targets(boxes, labels, K, H, W, S)
        G = f.create_group("targets")
        for k, v in dict(boxes=boxes, labels=labels, heat=heat, ind=ind, wh=wh, off=off).items():
            put(G, k, v)
        G.attrs["K"], G.attrs["S"], G.attrs["H"], G.attrs["W"] = K, S, Hi, Wi

        # focal over a batch of 2 such heatmaps, logits with clamped extremes
        gt = np.stack([heat, np.flip(heat, 2).copy()])
        x = torch.randn(2, K, H, W, dtype=torch.float64) * 2
        x[0, 0, 0, :4] = torch.tensor([12.0, -12.0, 9.5, -9.5])
        x = x.float().double().requires_grad_()
        L = focal(x, torch.from_numpy(gt).double())
        L.backward()
        G = f.create_group("focal")
        put(G, "x", x.detach().float()), put(G, "gt", gt), put(G, "loss", L.item()), put(G, "dx", x.grad.float())
        x0 = x.detach().clone().requires_grad_()
        L0 = focal(x0, torch.zeros_like(x0) + torch.from_numpy(gt * 0.5).double())  # no positives
        L0.backward()
        put(G, "gt_nopos", gt * 0.5), put(G, "loss_nopos", L0.item()), put(G, "dx_nopos", x0.grad.float())

        # RegL1Loss over the batch: image 0 has the 5 objects, image 1 the first 2
        pred = torch.randn(2, 2, H, W, dtype=torch.float64).float().double().requires_grad_()
        offs = [0, 5, 7]
        rows = []
        for i in range(2):
            for j in range(offs[i + 1] - offs[i]):
                rows.append((i, j))
        for which, tgt in (("wh", wh), ("off", off)):
            p = pred.view(2, 2, H * W)
            vals = torch.stack([p[i, :, int(ind[j])] for i, j in rows])
            t = torch.tensor(np.stack([tgt[j] for i, j in rows]), dtype=torch.float64)
            mask = torch.ones_like(t)
            loss = F.l1_loss(vals * mask, t * mask, reduction="sum") / (mask.sum() + 1e-4)
            pred.grad = None
            loss.backward()
            put(G := f.require_group("regl1"), which + "_loss", loss.item())
            put(G, which + "_dpred", pred.grad.float())
        put(G, "pred", pred.detach().float()), put(G, "offs", np.array(offs, np.int32))

        # segmentation cross-entropy
        lg = torch.randn(2, K + 1, H, W, dtype=torch.float64).float().double().requires_grad_()
        lab = torch.from_numpy(rs.randint(0, K + 1, size=(2, H, W)).astype(np.int64))
        ce = F.cross_entropy(lg, lab)
        ce.backward()
        G = f.create_group("segce")
        put(G, "logits", lg.detach().float()), put(G, "labels", lab.numpy().astype(np.uint8))
        put(G, "loss", ce.item()), put(G, "dlogits", lg.grad.float())

        # segmentation cross-entropy of stride-4 logits bilinearly upsampled
        # to the labels' full resolution (as detect-train scores the masks)
        lg = torch.randn(2, K + 1, H, W, dtype=torch.float64).float().double().requires_grad_()
        lab = torch.from_numpy(rs.randint(0, K + 1, size=(2, Hi, Wi)).astype(np.int64))
        ce = F.cross_entropy(F.interpolate(lg, size=(Hi, Wi), mode="bilinear", align_corners=False), lab)
        ce.backward()
        G = f.create_group("segup")
        put(G, "logits", lg.detach().float()), put(G, "labels", lab.numpy().astype(np.uint8))
        put(G, "loss", ce.item()), put(G, "dlogits", lg.grad.float())

        # decode: CenterNet's _nms (3x3 max pool, keep equal) and _topk, one image
        hm = torch.randn(K, H, W) * 3
        whp = torch.rand(2, H, W) * 6 - 0.5  # some negative sizes: clamped at 0
        offp = torch.rand(2, H, W)
        s = torch.sigmoid(hm.double())
        hmax = F.max_pool2d(s[None], 3, stride=1, padding=1)[0]
        keep = (hmax == s)
        idx = torch.nonzero(keep.flatten()).flatten().numpy()
        sc = s.flatten().numpy()[idx]
        order = np.lexsort((idx, -sc))[:20]
        dets = []
        for o in order:
            at = int(idx[o])
            k, p = divmod(at, H * W)
            y, xx = divmod(p, W)
            w, h = max(float(whp[0, y, xx]), 0.0), max(float(whp[1, y, xx]), 0.0)
            cx, cy = xx + float(offp[0, y, xx]), y + float(offp[1, y, xx])
            x0 = min(max((cx - w / 2) * S, 0), Wi)
            x1 = min(max((cx + w / 2) * S, 0), Wi)
            y0 = min(max((cy - h / 2) * S, 0), Hi)
            y1 = min(max((cy + h / 2) * S, 0), Hi)
            dets.append([x0, y0, x1 - x0, y1 - y0, float(sc[o]), k])
        G = f.create_group("decode")
        put(G, "hm", hm), put(G, "wh", whp), put(G, "off", offp), put(G, "dets", np.array(dets, np.float64))
        G.attrs["topk"] = 20

        # bilinear upsampling of mask logits (align_corners=False)
        z = torch.randn(1, 4, 5, 6)
        G = f.create_group("bilinear")
        put(G, "x", z[0]), put(G, "y", F.interpolate(z, size=(20, 24), mode="bilinear", align_corners=False)[0])

        # the head with one upsampling and a skip map (kd_det.h): the
        # outputs and every gradient of sum_j <out_j, R_j>, seg's being the
        # masks' logits (seg head bilinearly upsampled to the skip map's
        # 7x9, plus the skip head)
        head_skip(f.create_group("head_skip"))
    os.replace(tmp, OUT)


def head_skip(G):
    n, C, h, w, up, hc, K, sC, sh, sw = 2, 3, 3, 4, 4, 5, 2, 2, 7, 9
    dd = torch.float64
    P = {}

    def par(name, *shape):
        P[name] = (torch.rand(*shape, dtype=dd) - 0.5).float().double().requires_grad_()
        return P[name]

    x = torch.randn(n, C, h, w, dtype=dd).float().double().requires_grad_()
    sk = torch.randn(n, sC, sh, sw, dtype=dd).float().double().requires_grad_()
    cw = par("up.0.conv.weight", up, C, 3, 3)
    g, b = par("up.0.bn.weight", up), par("up.0.bn.bias", up)
    y = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), cw, padding=1)
    y = F.relu(F.batch_norm(y, None, None, g, b, training=True, eps=1e-5))
    outs = {}
    for name, inp, k in (("hm", y, K), ("wh", y, 2), ("reg", y, 2), ("seg", y, K + 1), ("skip", sk, K + 1)):
        w0, b0 = par(name + ".0.weight", hc, inp.shape[1], 3, 3), par(name + ".0.bias", hc)
        w2, b2 = par(name + ".2.weight", k, hc, 1, 1), par(name + ".2.bias", k)
        outs[name] = F.conv2d(F.relu(F.conv2d(inp, w0, b0, padding=1)), w2, b2)
    outs["seg"] = F.interpolate(outs["seg"], size=(sh, sw), mode="bilinear", align_corners=False) + outs.pop("skip")
    obj = 0
    for name, o in outs.items():
        R = torch.randn(o.shape, dtype=dd).float().double()
        put(G, "R_" + name, R.float()), put(G, "out_" + name, o.detach().float())
        obj = obj + (o * R).sum()
    obj.backward()
    put(G, "x", x.detach().float()), put(G, "skip", sk.detach().float())
    put(G, "dx", x.grad.float()), put(G, "dskip", sk.grad.float())
    for name, t in P.items():
        put(G, "p/" + name, t.detach().float()), put(G, "g/" + name, t.grad.float())


if __name__ == "__main__":
    main()
