#!/usr/bin/python3
"""The peer of linprobe: scikit-learn on the same dataset files, 2 cores.
Prints one JSON line with accuracies and seconds."""
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
t = time.time()
s = StandardScaler().fit(X)
lr = LogisticRegression(C=1.0, max_iter=int(sys.argv[3]) if len(sys.argv) > 3 else 100)
lr.fit(s.transform(X), y)
lin = lr.score(s.transform(Xt), yt); tl = time.time() - t
t = time.time()
kn = KNeighborsClassifier(5, n_jobs=2).fit(X, y).score(Xt, yt); tk = time.time() - t
print(json.dumps({"top1": lin, "linear_s": tl, "knn_top1": kn, "knn_s": tk, "iters": int(lr.n_iter_[0])}))
