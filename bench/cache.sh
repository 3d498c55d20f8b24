#!/bin/sh
# bench/cache.sh [WORKDIR] — the teacher cache (teacher-extract --save-cache /
# --from-cache): bytes per epoch of N Fashion-MNIST images (mocov2, 2 views,
# batch 128, a resnet8x4 teacher with a 128-d head), and the speed of a
# student step fed from the cache against one with the live teacher in the
# pipe.  The student loss is moco: it reads the same stream a DisCo or SEED
# student does, and the point is what feeds it.
#   N=20000 (size run)  SPEEDN=2560 (speed run, 20 frames)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/bin
W=${1:-${TMPDIR:-/tmp}/kd-bench-cache}
N=${N:-20000}
SPEEDN=${SPEEDN:-2560}
mkdir -p "$W"
now() { date +%s.%N; }
[ -s "$W/fm.h5" ] || "$B/dataset" /usr/share/datasets/fashion-mnist --split train -o "$W/fm.h5" >/dev/null
[ -s "$W/t.h5" ] || "$B/model-init" --arch resnet8x4 --in-channels 1 --head mlp:2048:128 -o "$W/t.h5" >/dev/null
[ -s "$W/s.h5" ] || "$B/model-init" --arch resnet20 --in-channels 1 --head mlp:512:128 -o "$W/s.h5" >/dev/null
A="--policy mocov2 --views 2 --batch 128 --seed 7 --epochs 1"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- size: one epoch of N images; per-dataset storage gives the emb-only size
t0=$(now)
"$B/augment" $A --limit "$N" "$W/fm.h5" | "$B/teacher-extract" -m "$W/t.h5" --save-cache "$W/c-epoch.h5" >/dev/null
t1=$(now)
echo "# one epoch, $N images: live teacher with --save-cache took $(echo "$t1 - $t0" | bc) s"
/usr/bin/python3 - "$W/c-epoch.h5" <<'EOF'
import h5py, os, sys
p = sys.argv[1]
f = h5py.File(p, 'r')
st = {}
f.visititems(lambda n, o: st.__setitem__(n, o.id.get_storage_size()) if isinstance(o, h5py.Dataset) else None)
total = os.path.getsize(p)
keys = st['frames'] + st['index']
emb = sum(v for k, v in st.items() if '.emb' in k)
feat = sum(v for k, v in st.items() if '.feat' in k)
raw = sum(f[k].size * f[k].dtype.itemsize for k in st)
print(f"bytes_per_epoch {total}  (file; raw {raw}, stored datasets {sum(st.values())}, {f.attrs['frames']} frames, {f.attrs['rows']} rows)")
for k in sorted(st):
    print(f"  {k:22s} {str(f[k].shape):16s} {st[k]:>11d} bytes stored, {f[k].size * f[k].dtype.itemsize:>11d} raw")
print(f"emb_only_bytes_per_epoch {total - feat}  (t.emb0 + t.emb1 {emb} + keys {keys} + metadata)")
print(f"with_feat_bytes_per_epoch {total}")
n = int(f.attrs['rows'])
print(f"bytes_per_image {total / n:.0f} with feat, {(total - feat) / n:.0f} emb only; "
      f"20000 images: {total / n * 20000 / 1e6:.1f} MB, {(total - feat) / n * 20000 / 1e6:.1f} MB per epoch")

EOF

# ---- speed: augment | teacher | distill-step --method moco, live vs cache
"$B/augment" $A --limit "$SPEEDN" "$W/fm.h5" | "$B/teacher-extract" -m "$W/t.h5" --save-cache "$W/c-speed.h5" >/dev/null
t0=$(now)
"$B/augment" $A --limit "$SPEEDN" "$W/fm.h5" | "$B/teacher-extract" -m "$W/t.h5" \
    | "$B/distill-step" --method moco -m "$W/s.h5" -o "$W/st-live.h5" --quiet >/dev/null
t1=$(now)
"$B/augment" $A --limit "$SPEEDN" "$W/fm.h5" | "$B/teacher-extract" --from-cache "$W/c-speed.h5" \
    | "$B/distill-step" --method moco -m "$W/s.h5" -o "$W/st-cache.h5" --quiet >/dev/null
t2=$(now)
live=$(echo "$t1 - $t0" | bc)
cache=$(echo "$t2 - $t1" | bc)
echo "speed $SPEEDN images x 2 views, batch 128: live teacher ${live} s ($(echo "$SPEEDN / $live" | bc) img/s), from the cache ${cache} s ($(echo "$SPEEDN / $cache" | bc) img/s)"
echo "ratio_cache_over_live $(echo "scale=2; $live / $cache" | bc)"
# the student sees the same bytes either way, so it learns the same weights
if h5diff -q "$W/st-live.h5" "$W/st-cache.h5" >/dev/null 2>&1; then
    echo "students identical (h5diff): yes"
else
    echo "students identical (h5diff): no"
fi
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
