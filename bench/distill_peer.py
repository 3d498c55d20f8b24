#!/usr/bin/python3
"""PyTorch peer of bench/distill.sh: one epoch of DisCo distillation the
usual way.  A DataLoader with WORKERS processes makes MoCo v2's two views of
every image (torchvision's PIL transforms, bench/augment_peer.py's mocov2);
the main process, with torch.set_num_threads(THREADS), runs the frozen
teacher under torch.no_grad() in eval mode on both views, then one student
step as distill-step --loss moco:1,disco:32 makes it (lib/loss/kd_loss_moco.c,
kd_loss_disco.c, METHODS.md "DisCo"):
  - momentum update of the key encoder (m 0.999), keys of view1 with BN
    over shuffled groups of 32 (bench/train_peer.py's key_forward);
  - q = n(S(view0)), q' = n(S(view1)): two training-mode forwards of the
    student (BN statistics per view, as distill-step's forward per view);
  - L = InfoNCE(q, k, queue 4096, tau 0.2) + 32 (mean |t0 - q|^2 + mean
    |t1 - q'|^2), t the teacher's normalised embeddings;
  - SGD lr 0.03 (cosine over the epoch's steps), momentum 0.9, wd 1e-4;
    enqueue the keys.
The models are bench/train_peer.py's Enc (tests/gen/models.py's zoo, a
2048 -> 128 head without BN): resnet8x4 teacher, resnet20 student, both
randomly initialised (the speed does not depend on the weights).

Usage: distill_peer.py DATASET.h5 LIMIT BATCH WORKERS THREADS QUEUE OUT.pt
Prints one JSON line: images, steps, seconds (the epoch loop, DataLoader
start-up included), images_per_s."""
import copy
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment_peer  # noqa: E402
import train_peer  # noqa: E402


class TwoViews(torch.utils.data.Dataset):
    """The images as a torchvision dataset holds them (uint8 arrays, made
    PIL per item), two independent views of each."""

    def __init__(self, x, aug):
        self.x, self.aug = x, aug

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        im = Image.fromarray(self.x[i])
        return self.aug(im), self.aug(im)


def main():
    path, limit, B, workers, threads, K, out = sys.argv[1:8]
    limit, B, workers, threads, K = int(limit), int(B), int(workers), int(threads), int(K)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with h5py.File(path, "r") as f:
        x = f["images"][:limit] if limit else f["images"][:]
        mean, std = [float(v) for v in f.attrs["mean"]], [float(v) for v in f.attrs["std"]]
    x = np.ascontiguousarray(x[..., 0])  # [N,H,W]: mode "L" images
    N, H, W = x.shape
    loader = torch.utils.data.DataLoader(TwoViews(x, augment_peer.mocov2(H, W, mean, std)), batch_size=B,
                                         shuffle=True, num_workers=workers, drop_last=False)
    teacher = train_peer.Enc("resnet8x4").eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = train_peer.Enc("resnet20").train()
    key = copy.deepcopy(student)
    for p in key.parameters():
        p.requires_grad_(False)
    queue = F.normalize(torch.randn(K, 128), dim=1)
    ptr = 0
    steps = math.ceil(N / B)
    opt = torch.optim.SGD(student.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    t0 = time.perf_counter()
    seen = 0
    for x0, x1 in loader:
        n = x0.shape[0]
        with torch.no_grad():
            t_q = F.normalize(teacher(x0), dim=1)
            t_k = F.normalize(teacher(x1), dim=1)
            for pk, pq in zip(key.parameters(), student.parameters()):
                pk.mul_(0.999).add_(pq, alpha=0.001)
            k = F.normalize(train_peer.key_forward(key, x1, 32 if n % 32 == 0 else n), dim=1)
        q = F.normalize(student(x0), dim=1)
        q1 = F.normalize(student(x1), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.2
        moco = F.cross_entropy(logits, torch.zeros(n, dtype=torch.long))
        disco = ((t_q - q) ** 2).sum(1).mean() + ((t_k - q1) ** 2).sum(1).mean()
        loss = moco + 32 * disco
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        queue[(ptr + torch.arange(n)) % K] = k  # FIFO, wrapping as kd_queue does
        ptr = (ptr + n) % K
        seen += n
    torch.save(student.state_dict(), out)
    dt = time.perf_counter() - t0
    if not math.isfinite(loss.item()):
        sys.exit("distill_peer.py: the loss is not finite")
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "images": seen, "steps": steps, "batch": B,
                      "workers": workers, "threads": threads, "queue": K, "seconds": round(dt, 3),
                      "images_per_s": round(seen / dt, 1), "last_loss": round(loss.item(), 4)}))


if __name__ == "__main__":
    main()
