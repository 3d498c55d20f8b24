#!/usr/bin/python3
"""A stage of your own inside a distillation pipe: perturbs the teacher's
embeddings (t.emb0, t.emb1, as teacher-extract writes them: L2-normalised)
with Gaussian noise of --sigma and normalises them again, passing every
other tensor through untouched.  Drop it between the teacher and the
student, e.g. to ask how much a DisCo student depends on an exact teacher:

    augment --views 2 ... | teacher-extract -m teacher.h5 \\
      | examples/teacher_noise.py 0.05 | distill-step --loss moco:1,disco:32 ...
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import kdt  # noqa: E402

sigma = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
try:
    with kdt.Writer(sys.stdout.buffer) as w:
        for meta, tensors in kdt.read_frames(sys.stdin.buffer):
            if "t.emb0" not in tensors:
                sys.exit("teacher_noise.py: frame %s: no t.emb0 (put teacher-extract before me)" % meta.get("step", "?"))
            # noise keyed by the frame's step: a rerun (or a resumed run) sees the same stream
            rng = np.random.default_rng(int(meta.get("step", 0)))
            for name in ("t.emb0", "t.emb1"):
                if name in tensors:
                    e = tensors[name] + sigma * rng.standard_normal(tensors[name].shape)
                    tensors[name] = (e / np.linalg.norm(e, axis=-1, keepdims=True)).astype(np.float32)
            meta["teacher_noise"] = str(sigma)
            w.write(meta, tensors)
except kdt.StreamError as e:
    sys.exit("teacher_noise.py: %s" % e)
except BrokenPipeError:
    pass
