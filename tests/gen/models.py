#!/usr/bin/python3
"""Fixtures for lib/kd_model (tests/unit/test_models.c): every architecture
built in PyTorch 1.13 / torchvision 0.14 -- torchvision's own resnet18/34/50,
mobilenet_v2, efficientnet_b0, mobilenet_v3_large, and the CIFAR models of
the CRD benchmark (resnet20/56/8x4/32x4, wrn_16_2/40_2) re-written below
after CRD's resnet.py / wrn.py (same module names and wiring; global average
pooling instead of AvgPool2d(8), equal at 32x32).

Weights are NOT stored: they would be megabytes (resnet18 alone is 45 MB).
Both sides fill every state-dict tensor from its name with the same integer
hash (test_weights below; tests/unit/test_models.c has the C twin), so the
fixture only holds names, shapes, inputs and outputs and stays small.

Writes tests/fixtures/models.h5 (kdpipe_kind "fixture"), one group per case:
  attributes  arch, in_channels, num_classes, cifar_stem, head_hidden,
              head_out, head_bn, width_mult, mode ("eval" or "train")
  names       attribute: every state-dict key in order; shapes i64 [k,5]
              (rank, dims padded with 0)
  N, H, W     attributes: the input [N,C,H,W] is the pattern of the key
              "input:" + case name, times sqrt(12) (unit variance)
  feat, logits, emb, map  outputs (map: last stage)
  train cases also: dfeat, dlogits, demb, dmap (the gradients fed back),
              pnames (parameter names), gss f64 [P] (sum of squares of each
              parameter's gradient), gproj f64 [P] (gradient projected on
              the name-keyed pattern "proj:"+name), rm_<name> running means
              after the step.

Run: /usr/bin/python3 tests/gen/models.py   (from the repository root)
"""
import os

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models.h5")
M32 = 0xFFFFFFFF


def fnv1a(s):
    h = 0x811C9DC5
    for c in s.encode():
        h = ((h ^ c) * 0x01000193) & M32
    return h


def pattern(key, n):
    """u in [-0.5, 0.5): a 32-bit integer hash of (index, key), exact in C."""
    j = np.arange(n, dtype=np.uint64)
    h = (j * np.uint64(0x9E3779B1) + np.uint64(key)) & np.uint64(M32)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(M32)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(M32)
    h ^= h >> np.uint64(16)
    return h.astype(np.float64) / 4294967296.0 - 0.5


def test_weights(name, shape):
    """The value every test fills a tensor with (see test_models.c)."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = pattern(fnv1a(name), n)
    if name.endswith("running_var"):
        v = 1.0 + u
    elif name.endswith("running_mean"):
        v = 0.2 * u
    elif name.endswith("bias"):
        v = 0.2 * u
    elif len(shape) == 1:  # BN weight
        v = 1.0 + 0.4 * u
    else:
        fan_in = int(np.prod(shape[1:]))
        v = u * np.sqrt(12.0 / fan_in)  # std sqrt(1/fan_in)
    return v.astype(np.float32).reshape(shape)


# ---- CRD's CIFAR models (names and wiring as in CRD's resnet.py / wrn.py)
class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        res = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + res)


class CifarResNet(nn.Module):
    def __init__(self, depth, f, in_ch, num_classes):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = f[0]
        self.conv1 = nn.Conv2d(in_ch, f[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(f[0])
        self.layer1 = self._make(f[1], n, 1)
        self.layer2 = self._make(f[2], n, 2)
        self.layer3 = self._make(f[3], n, 2)
        self.fc = nn.Linear(f[3], num_classes) if num_classes else nn.Identity()

    def _make(self, planes, blocks, stride):
        ds = None
        if stride != 1 or self.inplanes != planes:
            ds = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, ds)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        self.map = x
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class WBlock(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(i)
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.equal = i == o
        self.convShortcut = None if self.equal else nn.Conv2d(i, o, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equal:
            x = F.relu(self.bn1(x))
            out = x
        else:
            out = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return (x if self.equal else self.convShortcut(x)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, i, o, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WBlock(i if k == 0 else o, o, stride if k == 0 else 1) for k in range(n)])

    def forward(self, x):
        return self.layer(x)


class WRN(nn.Module):
    def __init__(self, depth, k, in_ch, num_classes):
        super().__init__()
        ch = [16, 16 * k, 32 * k, 64 * k]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_ch, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes) if num_classes else nn.Identity()

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = F.relu(self.bn1(x))
        self.map = x
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build(arch, in_ch, K, cifar_stem=False, width=1.0):
    """(model, classifier module, module whose output is the last stage map)."""
    tv = torchvision.models
    kk = K if K else 10
    if arch in ("resnet18", "resnet34", "resnet50"):
        m = getattr(tv, arch)(num_classes=kk)
        if cifar_stem:
            m.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
            m.maxpool = nn.Identity()
        elif in_ch != 3:
            m.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
        if not K:
            m.fc = nn.Identity()
        return m, "fc", m.layer4
    if arch in ("mobilenet_v2", "efficientnet_b0", "mobilenet_v3_large"):
        kw = {"width_mult": width} if arch == "mobilenet_v2" else {}
        m = getattr(tv, arch)(num_classes=kk, **kw)
        c0 = m.features[0][0]
        if in_ch != 3:
            m.features[0][0] = nn.Conv2d(in_ch, c0.out_channels, 3, 2, 1, bias=False)
        if not K:
            m.classifier = nn.Identity()
        return m, "classifier", m.features
    cifar = {"resnet20": (20, [16, 16, 32, 64]), "resnet56": (56, [16, 16, 32, 64]),
             "resnet8x4": (8, [32, 64, 128, 256]), "resnet32x4": (32, [32, 64, 128, 256])}
    if arch in cifar:
        d, f = cifar[arch]
        return CifarResNet(d, f, in_ch, K), "fc", None
    if arch in ("wrn_16_2", "wrn_40_2"):
        return WRN(int(arch[4:6]), 2, in_ch, K), "fc", None
    raise ValueError(arch)


def head(d, h, e, bn):
    if bn:
        return nn.Sequential(nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Linear(h, e))
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(inplace=True), nn.Linear(h, e))


def fill(module, prefix=""):
    sd = module.state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            new[k] = v
        else:
            new[k] = torch.from_numpy(test_weights(prefix + k, tuple(v.shape)))
    module.load_state_dict(new)


def run_case(g, c):
    arch, in_ch, K = c["arch"], c["in"], c["K"]
    N, H, W = c["N"], c["H"], c["W"]
    hh, ho, hbn = c.get("head", (0, 0, 0))
    train = c.get("train", False)
    torch.manual_seed(c.get("seed", 1))
    m, clsname, mapmod = build(arch, in_ch, K, c.get("cifar_stem", False), c.get("width", 1.0))
    fill(m)
    hd = None
    if hh:
        hd = head(m.fc.in_features if hasattr(m, "fc") and hasattr(m.fc, "in_features") else c["D"], hh, ho, hbn)
        fill(hd, "head.")
    cap = {}
    getattr(m, clsname).register_forward_pre_hook(lambda mod, inp: cap.__setitem__("feat", inp[0]))
    if mapmod is not None:
        mapmod.register_forward_hook(lambda mod, inp, out: cap.__setitem__("map", out))
    if train:
        for mod in m.modules():  # dropout/stochastic depth off: C does the same
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
            if type(mod).__name__ == "StochasticDepth":
                mod.p = 0.0
    m.train(train)
    if hd is not None:
        hd.train(train)
    # the input is a pattern too (not stored): "input:" + case name
    x = torch.from_numpy((pattern(fnv1a("input:" + c["name"]), N * in_ch * H * W) * np.sqrt(12.0))
                         .astype(np.float32).reshape(N, in_ch, H, W))
    # the reference runs in float64: what is left is our float32 rounding
    m.double()
    if hd is not None:
        hd.double()
    xr = x.double().requires_grad_(train)
    out = m(xr)
    feat = cap["feat"]
    fmap = cap["map"] if mapmod is not None else m.map
    logits = out if K else None
    emb = hd(feat) if hd is not None else None

    names = list(m.state_dict().keys()) + (["head." + k for k in hd.state_dict().keys()] if hd is not None else [])
    shapes = []
    allsd = dict(m.state_dict())
    if hd is not None:
        allsd.update({"head." + k: v for k, v in hd.state_dict().items()})
    for k in names:
        s = list(allsd[k].shape)
        shapes.append([len(s)] + s + [0] * (4 - len(s)))
    grp = g.create_group(c["name"])
    for key in ("arch",):
        grp.attrs[key] = arch
    grp.attrs["in_channels"] = in_ch
    grp.attrs["num_classes"] = K
    grp.attrs["cifar_stem"] = int(c.get("cifar_stem", False))
    grp.attrs["head_hidden"], grp.attrs["head_out"], grp.attrs["head_bn"] = hh, ho, int(hbn)
    grp.attrs["width_mult"] = float(c.get("width", 1.0))
    grp.attrs["mode"] = "train" if train else "eval"
    grp.attrs["names"] = names
    grp.create_dataset("shapes", data=np.array(shapes, dtype=np.int64))
    grp.attrs["N"], grp.attrs["H"], grp.attrs["W"] = N, H, W
    grp.create_dataset("feat", data=feat.detach().float().numpy())
    if train or fmap.numel() <= 4096:  # keeps the file small
        grp.create_dataset("map", data=fmap.detach().float().numpy())
    if logits is not None:
        grp.create_dataset("logits", data=logits.detach().float().numpy())
    if emb is not None:
        grp.create_dataset("emb", data=emb.detach().float().numpy())
    if train:
        loss = 0
        gens = {"dfeat": feat, "dlogits": logits, "demb": emb, "dmap": fmap}
        for nm_, t in gens.items():
            if t is None or nm_ not in c["grads"]:
                continue
            r = torch.randn(t.shape).double()
            grp.create_dataset(nm_, data=r.float().numpy())
            loss = loss + (t * r).sum()
        loss.backward()
        params = list(m.named_parameters()) + ([("head." + k, p) for k, p in hd.named_parameters()] if hd else [])
        grp.attrs["pnames"] = [k for k, _ in params]
        gss = np.array([float((p.grad.double() ** 2).sum()) if p.grad is not None else 0.0 for _, p in params])
        gproj = np.array([float((p.grad.double().numpy().ravel() * pattern(fnv1a("proj:" + k), p.numel())).sum())
                          if p.grad is not None else 0.0 for k, p in params])
        grp.create_dataset("gss", data=gss)
        grp.create_dataset("gproj", data=gproj)
        for k in c.get("rm", []):
            grp.create_dataset("rm_" + k, data=dict(m.state_dict(), **({"head." + a: b for a, b in hd.state_dict().items()} if hd else {}))[k].float().numpy())
    print("%-22s %-18s params %9d  out %s" % (c["name"], arch, sum(p.numel() for p in m.parameters()),
                                              tuple((logits if logits is not None else feat).shape)))


CASES = [
    dict(name="resnet18", arch="resnet18", **{"in": 3}, K=10, N=2, H=32, W=32),
    dict(name="resnet18_cifar_head", arch="resnet18", **{"in": 1}, K=10, N=2, H=16, W=16, cifar_stem=True,
         head=(64, 32, 1)),
    dict(name="resnet34_feat", arch="resnet34", **{"in": 1}, K=0, N=2, H=32, W=32),
    dict(name="resnet50", arch="resnet50", **{"in": 3}, K=10, N=2, H=32, W=32),
    dict(name="resnet20", arch="resnet20", **{"in": 3}, K=100, N=2, H=32, W=32),
    dict(name="resnet56", arch="resnet56", **{"in": 3}, K=100, N=2, H=32, W=32),
    dict(name="resnet8x4", arch="resnet8x4", **{"in": 1}, K=100, N=2, H=32, W=32),
    dict(name="resnet32x4", arch="resnet32x4", **{"in": 3}, K=100, N=2, H=32, W=32),
    dict(name="wrn_16_2", arch="wrn_16_2", **{"in": 1}, K=100, N=2, H=32, W=32),
    dict(name="wrn_40_2", arch="wrn_40_2", **{"in": 3}, K=100, N=2, H=32, W=32),
    dict(name="mobilenet_v2", arch="mobilenet_v2", **{"in": 3}, K=10, N=2, H=32, W=32),
    dict(name="mobilenet_v2_w05", arch="mobilenet_v2", **{"in": 1}, K=10, N=2, H=32, W=32, width=0.5),
    dict(name="efficientnet_b0", arch="efficientnet_b0", **{"in": 1}, K=10, N=2, H=32, W=32),
    dict(name="mobilenet_v3_large", arch="mobilenet_v3_large", **{"in": 3}, K=10, N=2, H=32, W=32),
    # training mode: batch statistics (inputs large enough that the last
    # BN sees >= 16 values per channel: with 2-4 the problem is so badly
    # conditioned that float rounding decides the 3rd digit), running-stat
    # updates, backward
    dict(name="train_resnet20_head", arch="resnet20", **{"in": 1}, K=10, N=4, H=16, W=16, head=(32, 16, 1),
         train=True, grads=("dfeat", "dlogits", "demb"), rm=("bn1.running_mean", "layer3.2.bn2.running_var",
                                                             "head.1.running_mean")),
    dict(name="train_resnet18_map", arch="resnet18", **{"in": 1}, K=0, N=4, H=48, W=48, train=True,
         grads=("dfeat", "dmap"), rm=("layer4.1.bn2.running_mean",)),
    dict(name="train_mobilenet_v3", arch="mobilenet_v3_large", **{"in": 3}, K=10, N=4, H=64, W=64, train=True,
         grads=("dlogits",), rm=("features.0.1.running_var",)),
    dict(name="train_efficientnet_b0", arch="efficientnet_b0", **{"in": 1}, K=0, N=4, H=64, W=64, train=True,
         grads=("dfeat", "dmap"), rm=("features.8.1.running_mean",)),
    dict(name="train_wrn_16_2", arch="wrn_16_2", **{"in": 3}, K=10, N=3, H=16, W=16, train=True,
         grads=("dlogits", "dmap")),
]


def main():
    torch.set_num_threads(2)
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        f.attrs["generator"] = "tests/gen/models.py (torch %s, torchvision %s)" % (torch.__version__,
                                                                                 torchvision.__version__)
        for c in CASES:
            run_case(f, c)
    os.replace(tmp, OUT)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
