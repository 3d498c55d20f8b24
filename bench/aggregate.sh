#!/bin/sh
# aggregate MB/s against cat(1) of the same stream: a stream of a few
# hundred MB (NFRAMES frames of 128 images: view0 [128,1,28,28], t.map0
# [128,64,7,7] and t.cam0 [128,10,7,7], resnet20's last-stage shapes on
# Fashion-MNIST; random values, written once to a tmp file by examples/kdt.py)
# is read from the page cache by `cat > /dev/null` and by aggregate in three
# modes writing its stream to /dev/null.  Best of 3 (the machine is shared).
# Appends a table to bench/results-aggregate.md.  NFRAMES=130 (~294 MB).
set -eu
cd "$(dirname "$0")/.."
[ -x bin/aggregate ] || { echo "build first: make" >&2; exit 1; }
PY=/usr/bin/python3
N=${NFRAMES:-130}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$PY - "$tmp/s.kdt" "$N" <<'EOF2'
import sys
sys.path.insert(0, "examples")
import kdt
import numpy as np
rng = np.random.default_rng(1)
with open(sys.argv[1], "wb") as f:
    for k in range(int(sys.argv[2])):
        t = {"view0": rng.standard_normal((128, 1, 28, 28), dtype=np.float32),
             "t.map0": np.maximum(rng.standard_normal((128, 64, 7, 7), dtype=np.float32), 0),
             "t.cam0": rng.standard_normal((128, 10, 7, 7), dtype=np.float32)}
        kdt.write_frame(f, {"step": str(k)}, t)
EOF2
bytes=$(stat -c %s "$tmp/s.kdt")
now() { date +%s.%N; }
best() { # best CMD... -> best wall seconds of 3 runs, output to /dev/null
    b=999999
    for i in 1 2 3; do
        t0=$(now); "$@" > /dev/null; t1=$(now)
        b=$($PY -c "print(min($b, $t1 - $t0))")
    done
    echo "$b"
}
cat "$tmp/s.kdt" > /dev/null # into the page cache
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
load=$(cut -d' ' -f1-3 /proc/loadavg)
tc=$(best cat "$tmp/s.kdt")
mbs() { $PY -c "print('%.0f' % ($bytes / 1e6 / $1))"; }
out=bench/results-aggregate.md
[ -s "$out" ] || printf '# aggregate against cat (bench/aggregate.sh)\n' > "$out"
{
    printf '\n## %s, %s, %s cores, load average %s\n\n' "$(date +%Y-%m-%d)" "$cpu" "$(nproc)" "$load"
    printf 'Stream: %s frames of 128 images, %s bytes.  Best of 3, from the page cache.\n\n' "$N" "$bytes"
    printf '| command | s | MB/s | cat / it |\n|---|---|---|---|\n'
    printf '| `cat` | %.3f | %s | 1 |\n' "$tc" "$(mbs "$tc")"
} >> "$out"
for mode in "--in t.cam0 --scales 1,2,4" "--in t.map0 --scales 1,2,4 --stride 1" "--in t.map0 --sparse-topk 8"; do
    # shellcheck disable=SC2086
    t=$(best bin/aggregate $mode --quiet "$tmp/s.kdt" -o -)
    r=$($PY -c "print('%.2f' % ($t / $tc))")
    printf '| `aggregate %s` | %.3f | %s | %s |\n' "$mode" "$t" "$(mbs "$t")" "$r" >> "$out"
    echo "aggregate $mode: $(mbs "$t") MB/s, cat $(mbs "$tc") MB/s: aggregate takes ${r}x cat's time"
done
