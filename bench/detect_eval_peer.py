#!/usr/bin/python3
"""The peer for bench/detect-eval.sh: pycocotools (built from the public
cocoapi sources in a temporary directory named by PYCOCOTOOLS_DIR) scoring
the same files.  Prints the 12 stats as one JSON object on stdout and the
timings on stderr.

usage: PYCOCOTOOLS_DIR=DIR detect_eval_peer.py GT.json DETS.json"""
import contextlib
import io
import json
import os
import sys
import time

sys.path.insert(0, os.environ["PYCOCOTOOLS_DIR"])
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl",
         "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def main():
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(sys.argv[1])
        dt = gt.loadRes(sys.argv[2])
        t1 = time.perf_counter()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    t2 = time.perf_counter()
    print(json.dumps(dict(zip(NAMES, [float(v) for v in ev.stats]))))
    print("pycocotools: load %.3f s, evaluate+accumulate+summarize %.3f s" % (t1 - t0, t2 - t1),
          file=sys.stderr)


if __name__ == "__main__":
    main()
