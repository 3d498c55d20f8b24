#!/usr/bin/python3
"""Synthetic COCO case for bench/detect-eval.sh: random ground truth and
noisy detections (jittered true boxes with scores that favour good boxes,
plus false positives), some crowd regions, some images without objects.

usage: detect_eval_case.py OUTDIR [NIMAGES] [SEED]
writes OUTDIR/gt.json and OUTDIR/dets.json"""
import json
import os
import sys

import numpy as np


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    ncat = 20
    W, H = 640, 480
    images = [{"id": i + 1, "width": W, "height": H, "file_name": "%06d.png" % (i + 1)}
              for i in range(n)]
    cats = [{"id": k + 1, "name": "class%d" % (k + 1), "supercategory": "x"}
            for k in range(ncat)]
    anns, dets = [], []
    aid = 1

    def rnd(v):
        return float(round(float(v), 2))

    for img in range(1, n + 1):
        ng = int(rng.poisson(7)) if rng.random() > 0.05 else 0
        for _ in range(ng):
            # log-uniform sizes cover small, medium and large
            w = float(np.exp(rng.uniform(np.log(6), np.log(400))))
            h = w * float(np.exp(rng.normal(0, 0.4)))
            w, h = min(w, W - 1), min(h, H - 1)
            x = rng.uniform(0, W - w)
            y = rng.uniform(0, H - h)
            c = int(rng.integers(1, ncat + 1))
            crowd = int(rng.random() < 0.03)
            box = [rnd(x), rnd(y), rnd(w), rnd(h)]
            # segmentation-like area: a bit smaller than the box
            area = box[2] * box[3] * float(rng.uniform(0.6, 1.0))
            anns.append({"id": aid, "image_id": img, "category_id": c, "bbox": box,
                         "area": area, "iscrowd": crowd})
            aid += 1
            # 0-3 detections per object: jittered, sometimes wrong class
            for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):
                q = float(rng.uniform(0.0, 0.25))
                dx, dy = rng.normal(0, q * w), rng.normal(0, q * h)
                sw, sh = np.exp(rng.normal(0, q)), np.exp(rng.normal(0, q))
                dc = c if rng.random() > 0.1 else int(rng.integers(1, ncat + 1))
                s = float(np.clip(1.0 - 2.5 * q + rng.normal(0, 0.15), 0.001, 1.0))
                dets.append({"image_id": img, "category_id": dc,
                             "bbox": [rnd(x + dx), rnd(y + dy), rnd(w * sw), rnd(h * sh)],
                             "score": round(s, 3)})
        for _ in range(int(rng.poisson(4))):
            w = float(np.exp(rng.uniform(np.log(6), np.log(300))))
            h = min(w * float(np.exp(rng.normal(0, 0.4))), H - 1)
            dets.append({"image_id": img, "category_id": int(rng.integers(1, ncat + 1)),
                         "bbox": [rnd(rng.uniform(0, W - w)), rnd(rng.uniform(0, H - h)),
                                  rnd(w), rnd(h)],
                         "score": round(float(rng.uniform(0.001, 0.6)), 3)})
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gt.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    with open(os.path.join(out, "dets.json"), "w") as f:
        json.dump(dets, f)
    print("%d images, %d annotations, %d detections" % (n, len(anns), len(dets)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
