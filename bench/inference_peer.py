#!/usr/bin/python3
"""PyTorch peer of bench/inference.c: eval-mode, no_grad forward of a batch of
1-channel inputs, torch.set_num_threads(THREADS).  resnet18 is torchvision's
with the CIFAR stem; resnet8x4/resnet20 are CRD's (tests/gen/models.py).
Usage: inference_peer.py ARCH [THREADS [BATCH [SIZE [SECONDS]]]]"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "gen"))
import models  # noqa: E402


def main():
    arch = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    B = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    S = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    secs = float(sys.argv[5]) if len(sys.argv) > 5 else 4
    torch.set_num_threads(threads)
    m, _, _ = models.build(arch, 1, 10, cifar_stem=(arch == "resnet18"))
    m.eval()
    x = torch.randn(B, 1, S, S)
    with torch.no_grad():
        m(x)
        reps, t0 = 0, time.perf_counter()
        while True:
            m(x)
            reps += 1
            t = time.perf_counter() - t0
            if t >= secs and reps >= 2:
                break
    print(json.dumps({"arch": arch, "threads": threads, "batch": B, "size": S,
                      "images_per_s": round(reps * B / t, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
