#!/usr/bin/python3
"""The peer of linprobe: scikit-learn on the same dataset files, 2 cores.
Prints one JSON line with accuracies, wall seconds and CPU seconds (this
process and its threads) of the logistic regression and of the kNN."""
import json, sys, time
import h5py, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

def load(p):
    f = h5py.File(p)
    x = f["images"][:]
    return x.reshape(len(x), -1).astype(np.float32) / 255.0, f["labels"][:]

X, y = load(sys.argv[1]); Xt, yt = load(sys.argv[2])
t, c = time.time(), time.process_time()
s = StandardScaler().fit(X)
lr = LogisticRegression(C=1.0, max_iter=int(sys.argv[3]) if len(sys.argv) > 3 else 100)
lr.fit(s.transform(X), y)
lin = lr.score(s.transform(Xt), yt); tl, cl = time.time() - t, time.process_time() - c
t, c = time.time(), time.process_time()
kn = KNeighborsClassifier(5, n_jobs=2).fit(X, y).score(Xt, yt); tk, ck = time.time() - t, time.process_time() - c
print(json.dumps({"top1": lin, "linear_s": tl, "linear_cpu": cl, "knn_top1": kn, "knn_s": tk, "knn_cpu": ck,
                  "iters": int(lr.n_iter_[0])}))
