#!/bin/sh
# detect-eval vs pycocotools on a synthetic COCO case (default 5000 images,
# ~33000 objects, ~56000 detections; KD_BENCH_IMAGES changes the size).
# pycocotools is built from the public cocoapi sources in a temporary
# directory outside the repository (needs cython3, python3-numpy,
# python3-dev) and removed afterwards; nothing fetched is kept.  The stats
# must agree within 1e-6; the speed ratio is printed end to end (both read
# the same JSON files) and against pycocotools' evaluation alone.
#
# COCOAPI_SRC (required): a checkout of github.com/cocodataset/cocoapi (a
# tree holding PythonAPI/ and common/) or its git directory; see
# bench/README.md.
cd "$(dirname "$0")/.." || exit 1
src=${COCOAPI_SRC:-}
if [ -z "$src" ]; then
    echo "bench/detect-eval.sh: set COCOAPI_SRC to the cocoapi sources, e.g." >&2
    echo "  git clone https://github.com/cocodataset/cocoapi /tmp/cocoapi && COCOAPI_SRC=/tmp/cocoapi bench/detect-eval.sh" >&2
    exit 1
fi
n=${KD_BENCH_IMAGES:-5000}
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
if [ -d "$src/PythonAPI" ]; then
    cp -r "$src/PythonAPI" "$src/common" "$d/" || exit 1
elif git --git-dir="$src" rev-parse HEAD >/dev/null 2>&1; then
    git --git-dir="$src" archive HEAD PythonAPI common | tar -x -C "$d" || exit 1
else
    echo "bench/detect-eval.sh: COCOAPI_SRC=$src holds neither PythonAPI/ and common/ nor a cocoapi git repository" >&2
    exit 1
fi
# NumPy >= 1.24 dropped the np.float alias that cocoeval.accumulate uses;
# it always meant the builtin float, so the semantics are unchanged.
sed -i 's/dtype=np\.float)/dtype=float)/' "$d/PythonAPI/pycocotools/cocoeval.py"
(cd "$d/PythonAPI" && /usr/bin/python3 setup.py build_ext --inplace) >"$d/build.log" 2>&1 || {
    echo "bench/detect-eval.sh: building pycocotools failed, see below" >&2
    tail -20 "$d/build.log" >&2
    exit 1
}
make -s bin/detect-eval || exit 1
/usr/bin/python3 bench/detect_eval_case.py "$d/case" "$n" 1 || exit 1
ls -l "$d/case" | awk 'NR>1 {printf "%s %.1f MB\n", $9, $5/1e6}'

# best of 3 for detect-eval, one run of the peer; wall and CPU (user+sys)
# seconds, since a busy machine stretches wall time for both
best=; bestcpu=
for i in 1 2 3; do
    /usr/bin/time -f "%e %U %S" -o "$d/t.kd" \
        bin/detect-eval --gt "$d/case/gt.json" --dets "$d/case/dets.json" >"$d/kd.json" || exit 1
    t=$(awk '{print $1}' "$d/t.kd"); c=$(awk '{print $2 + $3}' "$d/t.kd")
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
    if [ -z "$bestcpu" ] || [ "$(echo "$c < $bestcpu" | bc)" = 1 ]; then bestcpu=$c; fi
done
PYCOCOTOOLS_DIR="$d/PythonAPI" /usr/bin/time -f "%e %U %S" -o "$d/t.py" /usr/bin/python3 bench/detect_eval_peer.py \
    "$d/case/gt.json" "$d/case/dets.json" >"$d/py.json" 2>"$d/py.err" || { cat "$d/py.err" >&2; exit 1; }
cat "$d/py.err" >&2
/usr/bin/python3 - "$d/kd.json" "$d/py.json" "$best" "$bestcpu" "$d/t.py" "$d/py.err" <<'PY'
import json, re, sys
kd = json.load(open(sys.argv[1])); py = json.load(open(sys.argv[2]))
tk, ck = float(sys.argv[3]), float(sys.argv[4])
w, u, s = map(float, open(sys.argv[5]).read().split()[-3:])
tp, cp = w, u + s
ev = float(re.search(r"summarize ([0-9.]+) s", open(sys.argv[6]).read()).group(1))
worst = max(abs(kd[k] - py[k]) for k in py)
print("%-6s %12s %12s" % ("stat", "detect-eval", "pycocotools"))
for k in py:
    print("%-6s %12.6f %12.6f" % (k, kd[k], py[k]))
print("largest difference %.3g (%s)" % (worst, "agree within 1e-6" if worst <= 1e-6 else "DISAGREE"))
print("detect-eval (best of 3): %.3f s wall, %.3f s CPU" % (tk, ck))
print("pycocotools:             %.2f s wall, %.2f s CPU (evaluate+accumulate+summarize alone %.2f s wall)" % (tp, cp, ev))
print("ratio: %.1fx wall end to end, %.1fx CPU end to end, %.1fx pycocotools' evaluation alone vs all of detect-eval (wall)"
      % (tp / tk, cp / ck, ev / tk))
sys.exit(0 if worst <= 1e-6 else 1)
PY
