#!/usr/bin/python3
"""Extra detect-eval cases with pycocotools' own numbers.

pycocotools is not a Debian package: build it from the public cocoapi
sources in a temporary directory (bench/detect-eval.sh shows how) and point
PYCOCOTOOLS_DIR at its PythonAPI directory.  Writes
tests/fixtures/coco/case_<name>/{gt,dets,expected,per_class,voc}.json:
expected.json holds the 12 summary stats, voc.json VOC AP50 stated
independently in Python from detect-eval(1)'s VOC rules, per_class.json each category's AP
(mean of precision at all thresholds and recall points, area all, 100
detections, over entries > -1; -1 without ground truth), as detect-eval
--per-class reports it.

case_scenes is the ground truth of a scenes file (SCENES below, made by
bin/dataset; tests/scenes.bats makes it again and checks that its boxes are
gt.json's) with perturbed detections whose coordinates and scores are
exact in float32, so that the same numbers come through a detections file.

usage: PYCOCOTOOLS_DIR=DIR tests/gen/coco.py  (after make bin/dataset)"""
import contextlib
import io
import json
import os
import sys

import numpy as np

# NumPy >= 1.24 dropped the np.float alias that cocoeval.accumulate uses;
# it always meant the builtin float
if not hasattr(np, "float"):
    np.float = float
sys.path.insert(0, os.environ["PYCOCOTOOLS_DIR"])
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl",
         "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "coco")


def score(gt, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = gt
        g.createIndex()
        if dets:
            d = g.loadRes(dets)
        else:
            # loadRes refuses an empty list; an empty result set is what
            # detect-eval scores, so build it directly
            d = COCO()
            d.dataset = {"images": gt["images"], "categories": gt["categories"],
                         "annotations": []}
            d.createIndex()
        e = COCOeval(g, d, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    stats = dict(zip(NAMES, [float(v) for v in e.stats]))
    per = {}
    for k, cid in enumerate(e.params.catIds):
        p = e.eval["precision"][:, :, k, 0, 2]
        p = p[p > -1]
        per[str(cid)] = float(np.mean(p)) if p.size else -1.0
    return stats, per


def voc(gt, dets):
    """VOC AP50 as detect-eval(1) states it (the VOC devkit's rules in
    continuous coordinates): per category, detections in descending score,
    ties in (image id, file) order; each takes the ground truth of highest
    IoU in its image; IoU >= 0.5 with a crowd ("difficult") box is neither
    true nor false positive, with a box already taken a false positive.
    11-point: mean over recall 0, .1, .., 1 of the best precision at that
    recall or more; all-point: area under the monotone envelope."""
    per, m11, mall = {}, [], []
    for c in gt["categories"]:
        cid = c["id"]
        g = [a for a in gt["annotations"] if a["category_id"] == cid]
        npos = sum(1 for a in g if not a["iscrowd"])
        if npos == 0:
            per[str(cid)] = -1.0
            continue
        ds = sorted([(d["image_id"], i, d) for i, d in enumerate(dets) if d["category_id"] == cid],
                    key=lambda t: (t[0], t[1]))
        ds = [ds[i][2] for i in np.argsort([-t[2]["score"] for t in ds], kind="stable")]
        taken, tp, fp = set(), [], []
        for d in ds:
            best, bj = -1.0, None
            for j, a in enumerate(g):
                if a["image_id"] != d["image_id"]:
                    continue
                v = iou(d["bbox"], a["bbox"])
                if v > best:
                    best, bj = v, j
            if best >= 0.5:
                if g[bj]["iscrowd"]:
                    continue
                if bj in taken:
                    tp.append(0), fp.append(1)
                else:
                    taken.add(bj)
                    tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        tp, fp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(float).tiny)
        a11 = np.mean([np.max(prec[rec >= t], initial=0.0) for t in np.arange(11) / 10.0])
        r = np.concatenate(([0.0], rec, [1.0]))
        p = np.concatenate(([0.0], prec, [0.0]))
        for i in range(len(p) - 2, -1, -1):
            p[i] = max(p[i], p[i + 1])
        aall = float(np.sum((r[1:] - r[:-1]) * p[1:]))
        per[str(cid)] = aall
        m11.append(a11), mall.append(aall)
    return {"voc_ap50_11pt": float(np.mean(m11)) if m11 else -1.0,
            "voc_ap50_all": float(np.mean(mall)) if mall else -1.0, "per_class": per}


def iou(d, g):
    w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
    h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
    if w <= 0 or h <= 0:
        return 0.0
    i = w * h
    return i / (d[2] * d[3] + g[2] * g[3] - i)


def write(name, gt, dets):
    d = os.path.join(OUT, "case_" + name)
    os.makedirs(d, exist_ok=True)
    stats, per = score(gt, dets)
    for f, v in (("gt.json", gt), ("dets.json", dets), ("expected.json", stats),
                 ("per_class.json", per), ("voc.json", voc(gt, dets))):
        with open(os.path.join(d, f), "w") as fh:
            json.dump(v, fh, indent=1 if f != "gt.json" and f != "dets.json" else None)
            fh.write("\n")
    print(name, stats["AP"], stats["AR100"], file=sys.stderr)


def r2(v):
    return float(round(float(v), 2))


def random_case(rng, nimg, ncat, mean_gt, crowd_p, fp_rate, tie_scores=False, many=False):
    images = [{"id": 100 + 3 * i, "width": 320, "height": 240} for i in range(nimg)]
    cats = [{"id": 5 + 2 * k, "name": "c%d" % k} for k in range(ncat)]
    anns, dets = [], []
    aid = 1
    for im in images:
        ng = int(rng.poisson(mean_gt))
        for _ in range(ng):
            w = float(np.exp(rng.uniform(np.log(4), np.log(200))))
            h = min(w * float(np.exp(rng.normal(0, 0.3))), 239.0)
            w = min(w, 319.0)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            c = cats[int(rng.integers(0, ncat))]["id"]
            box = [r2(x), r2(y), r2(w), r2(h)]
            crowd = int(rng.random() < crowd_p)
            anns.append({"id": aid, "image_id": im["id"], "category_id": c, "bbox": box,
                         "area": box[2] * box[3] * float(rng.uniform(0.5, 1.0)),
                         "iscrowd": crowd})
            aid += 1
            for _ in range(int(rng.integers(0, 4 if not many else 12))):
                q = float(rng.uniform(0, 0.3))
                s = 0.5 if tie_scores and rng.random() < 0.5 else \
                    round(float(np.clip(1 - 2 * q + rng.normal(0, 0.2), 0.01, 1)), 2)
                dets.append({"image_id": im["id"],
                             "category_id": c if rng.random() > 0.15 else cats[int(rng.integers(0, ncat))]["id"],
                             "bbox": [r2(x + rng.normal(0, q * w)), r2(y + rng.normal(0, q * h)),
                                      r2(w * np.exp(rng.normal(0, q))), r2(h * np.exp(rng.normal(0, q)))],
                             "score": s})
        for _ in range(int(rng.poisson(fp_rate))):
            w = float(rng.uniform(4, 150))
            h = float(rng.uniform(4, 150))
            dets.append({"image_id": im["id"], "category_id": cats[int(rng.integers(0, ncat))]["id"],
                         "bbox": [r2(rng.uniform(0, 320 - w)), r2(rng.uniform(0, 240 - h)), r2(w), r2(h)],
                         "score": 0.5 if tie_scores else round(float(rng.uniform(0.01, 0.7)), 2)})
    return {"images": images, "categories": cats, "annotations": anns}, dets


SCENES = ["--split", "test", "--limit", "500", "--scenes", "40", "--objects", "0,5", "--seed", "16"]


def scenes_case(rng):
    import subprocess
    import tempfile

    import h5py
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.h5")
        subprocess.run([os.path.join(root, "bin", "dataset"), "/usr/share/datasets/fashion-mnist", *SCENES,
                        "-o", path], check=True, stdout=subprocess.DEVNULL)
        with h5py.File(path, "r") as f:
            boxes, labels, off = f["boxes"][:], f["box_labels"][:], f["box_offsets"][:]
            names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["classes"]]
    n = len(off) - 1
    gt = {"images": [{"id": i} for i in range(n)],
          "categories": [{"id": k, "name": names[k]} for k in range(len(names))],
          "annotations": []}
    dets = []
    q32 = lambda v: float(np.float32(round(float(v) * 64) / 64))  # noqa: E731
    for i in range(n):
        for q in range(off[i], off[i + 1]):
            b = [float(v) for v in boxes[q]]
            gt["annotations"].append({"id": int(q) + 1, "image_id": i, "category_id": int(labels[q]),
                                      "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
            for _ in range(int(rng.integers(0, 3))):
                j = float(rng.uniform(0, 0.25))
                c = int(labels[q]) if rng.random() > 0.15 else int(rng.integers(0, len(names)))
                dets.append({"image_id": i, "category_id": c,
                             "bbox": [q32(b[0] + rng.normal(0, j * b[2])), q32(b[1] + rng.normal(0, j * b[3])),
                                      q32(b[2] * np.exp(rng.normal(0, j))), q32(b[3] * np.exp(rng.normal(0, j)))],
                             "score": round(float(np.clip(1 - 2 * j + rng.normal(0, 0.2), 0.01, 1)) * 1024) / 1024})
        for _ in range(int(rng.poisson(1))):
            w, h = float(rng.uniform(5, 50)), float(rng.uniform(5, 50))
            dets.append({"image_id": i, "category_id": int(rng.integers(0, len(names))),
                         "bbox": [q32(rng.uniform(0, 96 - w)), q32(rng.uniform(0, 96 - h)), q32(w), q32(h)],
                         "score": round(float(rng.uniform(0.01, 0.7)) * 1024) / 1024})
    return gt, dets


def main():
    rng = np.random.default_rng(20261122)
    # ties: half the scores equal, so the stable sorts decide the order
    write("ties", *random_case(rng, 40, 4, 4, 0.0, 3, tie_scores=True))
    # crowd regions: 25 % crowd, detections matched to them are ignored
    write("crowd", *random_case(rng, 40, 3, 5, 0.25, 2))
    # more than 100 detections per image: the maxDets cut, AR1 < AR10 < AR100
    write("many", *random_case(rng, 6, 2, 25, 0.05, 60, many=True))
    # a category with detections and no ground truth, images with no ground
    # truth, a category with neither
    gt, dets = random_case(rng, 20, 3, 3, 0.05, 2)
    gt["categories"].append({"id": 99, "name": "nogt"})
    gt["categories"].append({"id": 98, "name": "nothing"})
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] % 2 == 0]
    for i in range(8):
        dets.append({"image_id": gt["images"][i]["id"], "category_id": 99,
                     "bbox": [10.0 + i, 10.0, 30.0, 30.0], "score": 0.3 + 0.05 * i})
    write("nogt", gt, dets)
    # area boundaries: gt "area" exactly 32^2 and 96^2 (inclusive on both
    # ends in pycocotools), area field unlike w*h, detections of area exactly
    # 32^2 and 96^2 unmatched
    imgs = [{"id": 1}, {"id": 2}]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 32, 32], "area": 1024.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 96, 96], "area": 9216.0, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 100, 100], "area": 500.0, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20], "area": 9000.0, "iscrowd": 0},
        {"id": 5, "image_id": 2, "category_id": 2, "bbox": [200, 0, 50, 50], "area": 2500.0, "iscrowd": 1},
    ]
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 32, 32], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [100, 100, 90, 96], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [300, 300, 32, 32], "score": 0.95},
        {"image_id": 1, "category_id": 1, "bbox": [300, 300, 96, 96], "score": 0.7},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 100, 90], "score": 0.6},
        {"image_id": 2, "category_id": 2, "bbox": [210, 10, 20, 20], "score": 0.99},
        {"image_id": 2, "category_id": 2, "bbox": [190, 0, 70, 50], "score": 0.98},
        {"image_id": 2, "category_id": 1, "bbox": [52, 50, 20, 20], "score": 0.6},
        {"image_id": 2, "category_id": 1, "bbox": [50, 52, 20, 20], "score": 0.6},
    ]
    write("areas", {"images": imgs, "categories": cats, "annotations": anns}, dets)
    # no detections at all
    gt, _ = random_case(rng, 10, 3, 3, 0.1, 0)
    write("empty", gt, [])
    # a scenes file's ground truth (dataset --scenes), as detect-eval --gt reads it
    write("scenes", *scenes_case(np.random.default_rng(16)))


if __name__ == "__main__":
    main()
