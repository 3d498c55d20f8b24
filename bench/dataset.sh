#!/bin/sh
# dataset: wall time to ingest the full Fashion-MNIST train split (60000
# gzipped IDX images) into a dataset file, vs a NumPy + h5py peer writing the
# same layout (bench/dataset_peer.py).  Best of 3 on both sides.
cd "$(dirname "$0")/.." || exit 1
[ -x bin/dataset ] || { echo "build first: make" >&2; exit 1; }
FM=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
PY=/usr/bin/python3
now() { date +%s.%N; }
best_time() {
    b=999999
    for i in 1 2 3; do
        t0=$(now); "$@" > /dev/null || exit 1; t1=$(now)
        b=$($PY -c "print(min($b, $t1 - $t0))")
    done
    echo "$b"
}
kd=$(best_time bin/dataset --quiet "$FM" --split train -o "$tmp/kd.h5")
py=$(best_time $PY bench/dataset_peer.py "$FM" "$tmp/py.h5")
$PY -c "print('dataset Fashion-MNIST train (60000): kdpipe %.2f s, numpy+h5py %.2f s, ratio %.2fx' % ($kd, $py, $py / $kd))"
ls -l "$tmp"/*.h5 | awk '{print "  " $5 " bytes  " $NF}'
