#!/bin/sh
# augment views/s: MoCo v2 policy, 2 views, one thread, vs torchvision's
# transforms on PIL images as the MoCo code composes them (one process).
# Two inputs: Fashion-MNIST 1x28x28 and 3x96x96 RGB images.
cd "$(dirname "$0")/.." || exit 1
[ -x bin/augment ] || { echo "build first: make" >&2; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
PY=/usr/bin/python3
for spec in "fm 20000 4000" "rgb96 4000 1000"; do
    set -- $spec
    what=$1 n=$2 np=$3
    $PY bench/augment_peer.py make "$tmp/$what.h5" "$what" "$n" || exit 1
    # best of 3 for both sides
    best=0
    for i in 1 2 3; do
        t0=$(date +%s.%N)
        bin/augment --policy mocov2 --views 2 --batch 256 --threads 1 --seed $i "$tmp/$what.h5" > /dev/null || exit 1
        t1=$(date +%s.%N)
        best=$($PY -c "import sys; v=2*$n/($t1-$t0); print(max(v, $best))")
    done
    best2=0
    for i in 1 2 3; do
        t0=$(date +%s.%N)
        bin/augment --policy mocov2 --views 2 --batch 256 --threads 2 --seed $i "$tmp/$what.h5" > /dev/null || exit 1
        t1=$(date +%s.%N)
        best2=$($PY -c "import sys; v=2*$n/($t1-$t0); print(max(v, $best2))")
    done
    peer=0
    for i in 1 2 3; do
        p=$($PY bench/augment_peer.py run "$tmp/$what.h5" "$np" | $PY -c "import json,sys; print(json.load(sys.stdin)['views_per_s'])")
        peer=$($PY -c "print(max($p, $peer))")
    done
    $PY -c "print('%-6s mocov2 2 views: augment %.0f views/s (1 thread; %.0f with 2), torchvision PIL %.0f views/s: %.1fx' % ('$what', $best, $best2, $peer, $best / $peer))"
done
