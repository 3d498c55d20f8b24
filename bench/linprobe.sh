#!/bin/sh
# linprobe vs scikit-learn on Fashion-MNIST raw pixels (60000 train, 10000
# test, 784 features), 2 threads each: LogisticRegression(C=1) on
# standardised pixels (L-BFGS, its default 100 iterations) against linprobe's
# L-BFGS with the same budget and its SGD; KNeighborsClassifier(5) against
# linprobe --knn 5 --knn-metric euclidean.  Accuracy, wall and CPU seconds.
# kdpipe's times are whole runs (reading the HDF5 files included);
# scikit-learn's exclude reading.  KD_BENCH_ITERS (100), KD_BENCH_EPOCHS (10).
cd "$(dirname "$0")/.." || exit 1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
bin/dataset /usr/share/datasets/fashion-mnist --split train -o $d/tr.h5 >/dev/null || exit 1
bin/dataset /usr/share/datasets/fashion-mnist --split test -o $d/te.h5 >/dev/null || exit 1
iters=${KD_BENCH_ITERS:-100} epochs=${KD_BENCH_EPOCHS:-10}
run() { # run NAME ARGS...: JSON line plus wall/cpu into $d/NAME
    name=$1; shift
    /usr/bin/time -f '%e %U %S' -o $d/$name.time bin/linprobe --threads 2 "$@" $d/tr.h5 $d/te.h5 > $d/$name.json || exit 1
}
run lbfgs --standardize --max-iter $iters
run sgd --standardize --solver sgd --epochs $epochs
run knn --no-linear --knn 5 --knn-metric euclidean
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 BLIS_NUM_THREADS=2 MKL_NUM_THREADS=2 \
    /usr/bin/python3 bench/linprobe_sklearn.py $d/tr.h5 $d/te.h5 $iters > $d/sk.json || exit 1
/usr/bin/python3 - "$d" "$epochs" <<'PY'
import json, sys
d, epochs = sys.argv[1], int(sys.argv[2])
def kd(n):
    j = json.load(open(f"{d}/{n}.json"))
    w, u, s = map(float, open(f"{d}/{n}.time").read().split()[-3:])
    return j, w, u + s
sk = json.load(open(f"{d}/sk.json"))
print("%-34s %8s %7s %7s %8s %7s %7s %7s %7s" % ("", "kd top1", "kd s", "kd cpu", "sk top1", "sk s", "sk cpu", "wall x", "cpu x"))
rows = [("LR L-BFGS %d it (sk %d it)" % (kd("lbfgs")[0]["iterations"], sk["iters"]), kd("lbfgs"), "top1", "linear"),
        ("LR SGD %d epochs (sk L-BFGS)" % epochs, kd("sgd"), "top1", "linear"),
        ("kNN k=5 euclidean", kd("knn"), "knn_top1", "knn")]
for name, (j, w, c), key, sk_key in rows:
    sw, sc = sk[sk_key + "_s"], sk[sk_key + "_cpu"]
    print("%-34s %8.4f %7.2f %7.2f %8.4f %7.2f %7.2f %6.1fx %6.1fx" % (name, j[key], w, c, sk[sk_key + "_top1" if sk_key == "knn" else "top1"], sw, sc, sw / w, sc / c))
PY
