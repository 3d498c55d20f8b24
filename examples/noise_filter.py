#!/usr/bin/python3
"""A stage of your own, in Python: adds Gaussian noise of --sigma to every
view tensor of a kdpipe stream and passes everything else through.  Drop it
between augment and distill-step:

    augment --views 2 fm-train.h5 | examples/noise_filter.py 0.1 | distill-step ...
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import kdt  # noqa: E402

sigma = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1
try:
    with kdt.Writer(sys.stdout.buffer) as w:  # the end marker only if every frame got through
        for meta, tensors in kdt.read_frames(sys.stdin.buffer):
            # noise keyed by the frame's step, so a rerun gives the same stream
            rng = np.random.default_rng(int(meta.get("step", 0)))
            for name, a in tensors.items():
                if name.startswith("view"):
                    tensors[name] = (a + sigma * rng.standard_normal(a.shape)).astype(np.float32)
            meta["noise"] = str(sigma)
            w.write(meta, tensors)
except kdt.StreamError as e:
    sys.exit("noise_filter.py: %s" % e)
except BrokenPipeError:
    pass
