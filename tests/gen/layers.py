#!/usr/bin/python3
"""Fixtures for lib/kd_layers (tests/unit/test_layers_torch.c): every layer
kernel run by PyTorch 1.13's own torch.nn modules on small random inputs.

Writes tests/fixtures/layers.h5 (root attributes kdpipe_format=1,
kdpipe_kind="fixture"), one group per case.  Every dataset is float32 and
flattened (the C side knows the shapes from the attributes):

  attribute kind   conv | bn | bneval | act | maxpool | avgpool | adaptive
                   | linear | scale
  x, dy            the input and a random upstream gradient of the output
  y, dx            output and input gradient (loss = sum(y * dy))
  conv             attrs N C H W O k stride pad groups bias; w, b, dw, db
  bn               attrs N C HW group momentum eps; gamma beta rm0 rv0 (running
                   stats before), rm rv (after), dgamma dbeta.  group > 0
                   means statistics per consecutive `group` images (shuffle
                   BN), running stats updated with the groups' mean statistic
  bneval           attrs N C HW eps; gamma beta rm rv
  act              attr act (the kd_act enum value), n
  maxpool/avgpool  attrs N C H W k stride pad
  adaptive         attrs N C H W oh ow
  linear           attrs N I O; w b dw db
  scale            attrs N C HW; s ds

Run: /usr/bin/python3 tests/gen/layers.py   (from anywhere)
"""
import os

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "layers.h5")
torch.manual_seed(20261122)
torch.set_default_dtype(torch.float32)


def t(*shape):
    return torch.randn(*shape)


def put(g, name, v):
    g.create_dataset(name, data=v.detach().numpy().astype(np.float32).ravel())


def conv_case(f, name, N, C, H, W, O, k, s, p, g, bias):
    m = nn.Conv2d(C, O, k, stride=s, padding=p, groups=g, bias=bias)
    x = t(N, C, H, W).requires_grad_()
    y = m(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    for a, v in dict(kind="conv", N=N, C=C, H=H, W=W, O=O, k=k, stride=s, pad=p, groups=g, bias=int(bias)).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "w", m.weight), put(G, "y", y), put(G, "dy", dy)
    put(G, "dx", x.grad), put(G, "dw", m.weight.grad)
    if bias:
        put(G, "b", m.bias), put(G, "db", m.bias.grad)


def bn_case(f, name, N, C, HW, group, momentum=0.1, eps=1e-5):
    Bn = nn.BatchNorm2d if HW > 1 else nn.BatchNorm1d
    shape = (N, C, HW, 1) if HW > 1 else (N, C)
    m = Bn(C, eps=eps, momentum=momentum)
    with torch.no_grad():
        m.weight.copy_(1 + 0.3 * torch.randn(C))
        m.bias.copy_(0.3 * torch.randn(C))
        m.running_mean.copy_(0.5 * torch.randn(C))
        m.running_var.copy_(1 + torch.rand(C))
    rm0, rv0 = m.running_mean.clone(), m.running_var.clone()
    x = (2 * t(*shape) + 0.7).requires_grad_()
    m.train()
    if group == 0:
        y = m(x)
        rm, rv = m.running_mean, m.running_var
    else:
        # one module per group (as on separate GPUs), same parameters
        ys, rms, rvs = [], [], []
        for i in range(N // group):
            rm_i, rv_i = rm0.clone(), rv0.clone()
            ys.append(F.batch_norm(x[i * group:(i + 1) * group], rm_i, rv_i, m.weight, m.bias,
                                   training=True, momentum=momentum, eps=eps))
            rms.append(rm_i), rvs.append(rv_i)
        y = torch.cat(ys)
        rm, rv = torch.stack(rms).mean(0), torch.stack(rvs).mean(0)
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    for a, v in dict(kind="bn", N=N, C=C, HW=HW, group=group, momentum=momentum, eps=eps).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "gamma", m.weight), put(G, "beta", m.bias), put(G, "rm0", rm0), put(G, "rv0", rv0)
    put(G, "y", y), put(G, "dy", dy), put(G, "dx", x.grad), put(G, "rm", rm), put(G, "rv", rv)
    put(G, "dgamma", m.weight.grad), put(G, "dbeta", m.bias.grad)


def bneval_case(f, name, N, C, HW, eps=1e-5):
    m = nn.BatchNorm2d(C, eps=eps)
    with torch.no_grad():
        m.weight.copy_(1 + 0.3 * torch.randn(C))
        m.bias.copy_(0.3 * torch.randn(C))
        m.running_mean.copy_(0.5 * torch.randn(C))
        m.running_var.copy_(0.5 + torch.rand(C))
    m.eval()
    x = t(N, C, HW, 1)
    y = m(x)
    G = f.create_group(name)
    for a, v in dict(kind="bneval", N=N, C=C, HW=HW, eps=eps).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "gamma", m.weight), put(G, "beta", m.bias)
    put(G, "rm", m.running_mean), put(G, "rv", m.running_var), put(G, "y", y)


# order of kd_act in lib/kd_layers.h
ACTS = [nn.ReLU(), nn.ReLU6(), nn.SiLU(), nn.Hardswish(), nn.Hardsigmoid(), nn.Sigmoid()]


def act_case(f, name, a):
    n = 97
    x = 4 * t(n)
    # keep clear of the kinks (0, +-3, 6) where the one-sided derivative is a convention
    for kink in (0.0, 3.0, -3.0, 6.0):
        x = torch.where((x - kink).abs() < 1e-2, x + 0.05, x)
    x.requires_grad_()
    y = ACTS[a](x)
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    G.attrs["kind"], G.attrs["act"], G.attrs["n"] = "act", a, n
    put(G, "x", x), put(G, "y", y), put(G, "dy", dy), put(G, "dx", x.grad)


def pool_case(f, name, kind, N, C, H, W, k, s, p):
    x = t(N, C, H, W).requires_grad_()
    m = nn.MaxPool2d(k, s, p) if kind == "maxpool" else nn.AvgPool2d(k, s, p)
    y = m(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    for a, v in dict(kind=kind, N=N, C=C, H=H, W=W, k=k, stride=s, pad=p).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "y", y), put(G, "dy", dy), put(G, "dx", x.grad)


def adaptive_case(f, name, N, C, H, W, oh, ow):
    x = t(N, C, H, W).requires_grad_()
    y = nn.AdaptiveAvgPool2d((oh, ow))(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    for a, v in dict(kind="adaptive", N=N, C=C, H=H, W=W, oh=oh, ow=ow).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "y", y), put(G, "dy", dy), put(G, "dx", x.grad)


def linear_case(f, name, N, I, O):
    m = nn.Linear(I, O)
    x = t(N, I).requires_grad_()
    y = m(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    for a, v in dict(kind="linear", N=N, I=I, O=O).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "w", m.weight), put(G, "b", m.bias), put(G, "y", y), put(G, "dy", dy)
    put(G, "dx", x.grad), put(G, "dw", m.weight.grad), put(G, "db", m.bias.grad)


def scale_case(f, name, N, C, HW):
    x = t(N, C, HW).requires_grad_()
    s = torch.sigmoid(t(N, C)).requires_grad_()
    y = x * s[:, :, None]
    dy = torch.randn_like(y)
    y.backward(dy)
    G = f.create_group(name)
    for a, v in dict(kind="scale", N=N, C=C, HW=HW).items():
        G.attrs[a] = v
    put(G, "x", x), put(G, "s", s), put(G, "y", y), put(G, "dy", dy), put(G, "dx", x.grad), put(G, "ds", s.grad)


def main():
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        #                       N  C  H  W  O  k  s  p  g  bias
        conv_case(f, "conv_3x3", 2, 3, 7, 7, 4, 3, 1, 1, 1, True)
        conv_case(f, "conv_3x3_s2_odd", 2, 4, 9, 8, 6, 3, 2, 1, 1, False)
        conv_case(f, "conv_groups2_s2", 2, 4, 9, 8, 6, 3, 2, 1, 2, False)
        conv_case(f, "conv_groups3_nopad", 3, 6, 7, 6, 9, 3, 1, 0, 3, True)
        conv_case(f, "conv_dw3x3", 3, 5, 6, 6, 5, 3, 1, 1, 5, False)
        conv_case(f, "conv_dw5x5_s2", 2, 4, 11, 11, 4, 5, 2, 2, 4, True)
        conv_case(f, "conv_1x1", 2, 6, 5, 5, 8, 1, 1, 0, 1, False)
        conv_case(f, "conv_1x1_s2", 2, 6, 7, 7, 4, 1, 2, 0, 1, True)
        conv_case(f, "conv_7x7_s2_stem", 1, 3, 13, 13, 4, 7, 2, 3, 1, False)
        conv_case(f, "conv_3x3_pad2", 2, 2, 5, 6, 3, 3, 1, 2, 1, True)
        bn_case(f, "bn2d", 4, 3, 25, 0)
        bn_case(f, "bn2d_group2", 6, 3, 20, 2)
        bn_case(f, "bn1d", 8, 6, 1, 0)
        bn_case(f, "bn1d_group4_mom", 8, 5, 1, 4, momentum=0.3, eps=1e-3)
        bneval_case(f, "bneval", 3, 4, 9)
        for a in range(len(ACTS)):
            act_case(f, "act%d" % a, a)
        pool_case(f, "maxpool_3s2p1", "maxpool", 2, 3, 9, 9, 3, 2, 1)
        pool_case(f, "maxpool_2s2", "maxpool", 2, 2, 8, 7, 2, 2, 0)
        pool_case(f, "avgpool_3s2p1", "avgpool", 2, 3, 9, 8, 3, 2, 1)
        pool_case(f, "avgpool_2s2", "avgpool", 2, 2, 8, 8, 2, 2, 0)
        adaptive_case(f, "adaptive_global", 2, 3, 7, 7, 1, 1)
        adaptive_case(f, "adaptive_7x5_to_3x2", 2, 3, 7, 5, 3, 2)
        linear_case(f, "linear", 5, 7, 3)
        scale_case(f, "scale", 2, 4, 9)
    os.replace(tmp, OUT)
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
