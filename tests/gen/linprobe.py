#!/usr/bin/python3
"""Fixtures for linprobe's numerics (tests/unit/test_linprobe.c): the optimum
of scikit-learn's LogisticRegression (multinomial, lbfgs, tolerance 1e-12)
and the predictions of KNeighborsClassifier on small random problems.

scikit-learn minimises C * sum_i CE_i + |W|^2 / 2 with the intercept not
penalised, which is kdpipe's (1/N) sum_i CE_i + (wd/2) |W|^2 at wd = 1/(C N).

Writes tests/fixtures/linprobe.h5 (kdpipe_kind "fixture"), one group per
logistic case:
  <case>/x f32 [N,D], <case>/y i32 [N], <case>/coef f64 [K,D],
  <case>/intercept f64 [K], attribute wd (= 1/(C N)), loss (the objective)
  cases: "noisy" (overlapping classes, C = 1) and "separable" (linearly
  separable, C = 0.1: finite optimum only because of the penalty)
and knn/bank f32 [N,D], knn/labels i32 [N], knn/queries f32 [M,D],
  knn/pred_k1, knn/pred_k5, knn/pred_k15 i32 [M] (Euclidean majority votes).

Run: /usr/bin/python3 tests/gen/linprobe.py   (from the repository root)
"""
import h5py
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier


def objective(x, y, coef, icpt, wd):
    z = x.astype(np.float64) @ coef.T + icpt
    z -= z.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1))
    return np.mean(lse - z[np.arange(len(y)), y]) + 0.5 * wd * (coef ** 2).sum()


def logistic_case(f, name, x, y, C):
    lr = LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(x.astype(np.float64), y)
    wd = 1.0 / (C * len(y))
    g = f.create_group(name)
    g["x"] = x.astype(np.float32)
    g["y"] = y.astype(np.int32)
    g["coef"] = lr.coef_
    g["intercept"] = lr.intercept_
    g.attrs["wd"] = wd
    g.attrs["loss"] = objective(x, y, lr.coef_, lr.intercept_, wd)


def main():
    r = np.random.default_rng(7)
    with h5py.File("tests/fixtures/linprobe.h5", "w") as f:
        f.attrs["kdpipe_format"] = 1
        f.attrs["kdpipe_kind"] = "fixture"
        # overlapping Gaussian classes: 4 classes in 6 dimensions
        n, d, k = 240, 6, 4
        y = np.arange(n) % k
        mu = r.normal(size=(k, d))
        x = (mu[y] + 1.2 * r.normal(size=(n, d))).astype(np.float32)
        logistic_case(f, "noisy", x, y, 1.0)
        # separable: 3 well apart clusters in 5 dimensions
        n, d, k = 150, 5, 3
        y = np.arange(n) % k
        mu = 6 * np.eye(k, d)
        x = (mu[y] + r.normal(size=(n, d))).astype(np.float32)
        logistic_case(f, "separable", x, y, 0.1)
        # kNN: 5 classes, 400 bank vectors, 100 queries in 8 dimensions
        n, m, d, k = 400, 100, 8, 5
        lab = np.arange(n) % k
        centres = 1.5 * r.normal(size=(k, d))
        bank = (centres[lab] + r.normal(size=(n, d))).astype(np.float32)
        q = (centres[np.arange(m) % k] + r.normal(size=(m, d))).astype(np.float32)
        g = f.create_group("knn")
        g["bank"] = bank
        g["labels"] = lab.astype(np.int32)
        g["queries"] = q
        for kk in (1, 5, 15):
            g["pred_k%d" % kk] = KNeighborsClassifier(kk).fit(bank, lab).predict(q).astype(np.int32)


if __name__ == "__main__":
    main()
