#!/bin/sh
# linprobe vs scikit-learn on Fashion-MNIST raw pixels (60000 train, 10000
# test, 784 features), 2 threads each: LogisticRegression(C=1) on
# standardised pixels, and KNeighborsClassifier(5).  Accuracy and time.
cd "$(dirname "$0")/.." || exit 1
d=$(mktemp -d)
bin/dataset /usr/share/datasets/fashion-mnist --split train -o $d/tr.h5 >/dev/null || exit 1
bin/dataset /usr/share/datasets/fashion-mnist --split test -o $d/te.h5 >/dev/null || exit 1
iters=${KD_BENCH_ITERS:-100}
t0=$(date +%s.%N)
lin=$(bin/linprobe --threads 2 --standardize --max-iter $iters $d/tr.h5 $d/te.h5) || exit 1
t1=$(date +%s.%N)
knn=$(bin/linprobe --threads 2 --no-linear --knn 5 --knn-metric euclidean $d/tr.h5 $d/te.h5) || exit 1
t2=$(date +%s.%N)
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 BLIS_NUM_THREADS=2 sk=$(/usr/bin/python3 bench/linprobe_sklearn.py $d/tr.h5 $d/te.h5 $iters) || exit 1
/usr/bin/python3 - "$lin" "$knn" "$sk" "$t0" "$t1" "$t2" <<'PY'
import json, sys
lin, knn, sk = (json.loads(a) for a in sys.argv[1:4]); t0, t1, t2 = map(float, sys.argv[4:7])
print("%-28s %9s %9s %9s %9s %7s" % ("", "kd top1", "kd s", "sk top1", "sk s", "ratio"))
print("%-28s %9.4f %9.2f %9.4f %9.2f %6.1fx" % ("logistic regression (%d it)" % sk["iters"], lin["top1"], t1 - t0, sk["top1"], sk["linear_s"], sk["linear_s"] / (t1 - t0)))
print("%-28s %9.4f %9.2f %9.4f %9.2f %6.1fx" % ("kNN k=5 euclidean", knn["knn_top1"], t2 - t1, sk["knn_top1"], sk["knn_s"], sk["knn_s"] / (t2 - t1)))
PY
rm -rf "$d"
