#!/usr/bin/python3
"""PyTorch peer of bench/train.c: one SGD step (momentum 0.9, wd 5e-4) per
batch, BN in training mode, torch.set_num_threads(THREADS).
"ce ARCH": forward, cross-entropy, backward, step.  "moco ARCH": MoCo v2 as
in its reference code on one process -- momentum update of the key encoder,
key forward on a shuffled batch with BN over groups of 32 (emulated by
reshaping the batch), unshuffle, query forward+backward through a
2048 -> 128 head, InfoNCE against a queue of 4096, enqueue.
Usage: train_peer.py ce|moco ARCH [THREADS [BATCH [SIZE [SECONDS]]]]"""
import copy
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "gen"))
import models  # noqa: E402


class Enc(nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.m, _, _ = models.build(arch, 1, 0, cifar_stem=(arch == "resnet18"))
        d = 512 if arch == "resnet18" else (256 if arch == "resnet8x4" else 64)
        self.head = models.head(d, 2048, 128, False)

    def forward(self, x):
        return self.head(self.m(x))


def key_forward(enc, x, group):
    """BN statistics per group of the shuffled batch: run the groups apart."""
    B = x.shape[0]
    idx = torch.randperm(B)
    xs = x[idx]
    ks = torch.cat([enc(xs[i:i + group]) for i in range(0, B, group)])
    out = torch.empty_like(ks)
    out[idx] = ks
    return out


def main():
    mode, arch = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    B = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    S = int(sys.argv[5]) if len(sys.argv) > 5 else 32
    secs = float(sys.argv[6]) if len(sys.argv) > 6 else 4
    torch.set_num_threads(threads)
    x0, x1 = torch.randn(B, 1, S, S), torch.randn(B, 1, S, S)
    y = torch.arange(B) % 10
    if mode == "ce":
        m, _, _ = models.build(arch, 1, 10, cifar_stem=(arch == "resnet18"))
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step():
            opt.zero_grad()
            F.cross_entropy(m(x0), y).backward()
            opt.step()
    else:
        q = Enc(arch).train()
        k = copy.deepcopy(q)
        for p in k.parameters():
            p.requires_grad_(False)
        queue = F.normalize(torch.randn(4096, 128), dim=1)
        ptr = [0]
        opt = torch.optim.SGD(q.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step():
            with torch.no_grad():
                for pk, pq in zip(k.parameters(), q.parameters()):
                    pk.mul_(0.999).add_(pq, alpha=0.001)
                kk = F.normalize(key_forward(k, x1, 32), dim=1)
            qq = F.normalize(q(x0), dim=1)
            logits = torch.cat([(qq * kk).sum(1, keepdim=True), qq @ queue.t()], 1) / 0.2
            loss = F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
            p = ptr[0]
            queue[p:p + B] = kk
            ptr[0] = (p + B) % queue.shape[0]
    step()
    reps, t0 = 0, time.perf_counter()
    while True:
        step()
        reps += 1
        t = time.perf_counter() - t0
        if t >= secs and reps >= 2:
            break
    print(json.dumps({"mode": mode, "arch": arch, "threads": threads, "batch": B, "size": S,
                      "images_per_s": round(reps * B / t, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
