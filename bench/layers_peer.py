#!/usr/bin/python3
"""PyTorch peer of bench/layers.c: the same convolutions through
torch.nn.functional.conv2d, forward and backward (dx and dw, no bias).

  layers_peer.py THREADS SECS N,C,H,W,O,k,stride,pad,groups [...]

One JSON line per shape, same keys as the C side."""
import json
import sys
import time

import torch
import torch.nn.functional as F


def timed(secs, fn):
    """Fastest run's seconds over at least 3 runs and secs seconds (as bench/layers.c)."""
    fn()
    reps, t0, best = 0, time.perf_counter(), 1e30
    while True:
        s = time.perf_counter()
        fn()
        t = time.perf_counter()
        best = min(best, t - s)
        reps += 1
        if t - t0 >= secs and reps >= 3:
            return best


def main():
    torch.set_num_threads(int(sys.argv[1]))
    secs = float(sys.argv[2])
    torch.manual_seed(0)
    for shape in sys.argv[3:]:
        N, C, H, W, O, k, s, p, g = map(int, shape.split(","))
        x = torch.randn(N, C, H, W, requires_grad=True)
        w = torch.randn(O, C // g, k, k, requires_grad=True)
        with torch.no_grad():
            y = F.conv2d(x, w, None, s, p, 1, g)
        dy = torch.randn_like(y)

        def fwd():
            with torch.no_grad():
                F.conv2d(x, w, None, s, p, 1, g)

        # forward under autograd once, then time the backward alone
        def bwd():
            torch.autograd.grad(yg, (x, w), dy, retain_graph=True)

        yg = F.conv2d(x, w, None, s, p, 1, g)
        tf = timed(secs, fwd)
        tb = timed(secs, bwd)
        flops = 2.0 * y.numel() * (C // g) * k * k
        print(json.dumps(dict(shape=shape, fwd_ms=1e3 * tf, bwd_ms=1e3 * tb, fwd_gflops=flops / tf / 1e9,
                              bwd_gflops=2 * flops / tb / 1e9)), flush=True)


if __name__ == "__main__":
    main()
