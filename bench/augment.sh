#!/bin/sh
# augment views/s: MoCo v2 policy, 2 views, one thread, vs torchvision's
# transforms on PIL images as the MoCo code composes them (one process; the
# images are decoded to PIL beforehand, so only the transforms are timed).
# Two inputs: Fashion-MNIST 1x28x28 and 3x96x96 RGB images.
#
# augment is timed as a whole process writing its stream to /dev/null:
#   end-to-end  one epoch including start-up (reading the HDF5 file, first
#               touch of the frame buffers)
#   steady      the extra epochs of a 4-epoch run over a 1-epoch run, i.e.
#               what a long training run sees
# Best of 3 on both sides (the machine is shared).  KD_BENCH_QUICK=1: fewer
# images.
cd "$(dirname "$0")/.." || exit 1
[ -x bin/augment ] || { echo "build first: make" >&2; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
PY=/usr/bin/python3
q=${KD_BENCH_QUICK:-0}
now() { date +%s.%N; }
best_time() { # best_time CMD... -> best wall seconds of 3 runs
    b=999999
    for i in 1 2 3; do
        t0=$(now); "$@" > /dev/null || exit 1; t1=$(now)
        b=$($PY -c "print(min($b, $t1 - $t0))")
    done
    echo "$b"
}
if [ "$q" = 1 ]; then specs="fm 10000 2000
rgb96 2000 500"; else specs="fm 60000 4000
rgb96 4000 1000"; fi
echo "$specs" | while read -r what n np; do
    $PY bench/augment_peer.py make "$tmp/$what.h5" "$what" "$n" || exit 1
    for th in 1 2; do
        t1=$(best_time bin/augment --policy mocov2 --views 2 --batch 256 --threads $th --epochs 1 "$tmp/$what.h5" -o /dev/null)
        t4=$(best_time bin/augment --policy mocov2 --views 2 --batch 256 --threads $th --epochs 4 "$tmp/$what.h5" -o /dev/null)
        eval "e2e$th=\$($PY -c \"print(2*$n/$t1)\")"
        eval "st$th=\$($PY -c \"print(2*3*$n/max($t4-$t1, 1e-9))\")"
        eval "ep$th=$t1"
    done
    peer=0
    for i in 1 2 3; do
        p=$($PY bench/augment_peer.py run "$tmp/$what.h5" "$np" | $PY -c "import json,sys; print(json.load(sys.stdin)['views_per_s'])")
        peer=$($PY -c "print(max($p, $peer))")
    done
    $PY - <<PYEOF
what, n, peer = "$what", $n, $peer
e1, s1, e2, s2, ep1, ep2 = $e2e1, $st1, $e2e2, $st2, $ep1, $ep2
print("%-6s mocov2, 2 views, %d images" % (what, n))
print("  torchvision PIL (1 process)   %8.0f views/s" % peer)
print("  augment 1 thread  steady      %8.0f views/s  %5.1fx" % (s1, s1 / peer))
print("  augment 1 thread  end-to-end  %8.0f views/s  %5.1fx  (one epoch incl. start-up: %.2f s)" % (e1, e1 / peer, ep1))
print("  augment 2 threads steady      %8.0f views/s  %5.1fx" % (s2, s2 / peer))
print("  augment 2 threads end-to-end  %8.0f views/s  %5.1fx  (one epoch incl. start-up: %.2f s)" % (e2, e2 / peer, ep2))
PYEOF
done
