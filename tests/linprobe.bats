#!/usr/bin/env bats
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

B="$BATS_TEST_DIRNAME/../bin"
LP="$B/linprobe"
PY=/usr/bin/python3
FM=/usr/share/datasets/fashion-mnist

setup_file() {
    "$B/dataset" --limit 3000 "$FM" -o "$BATS_FILE_TMPDIR/tr.h5" >/dev/null
    "$B/dataset" --limit 1000 --split test "$FM" -o "$BATS_FILE_TMPDIR/te.h5" >/dev/null
}

setup() {
    cd "$BATS_TEST_TMPDIR"
    ln -s "$BATS_FILE_TMPDIR/tr.h5" "$BATS_FILE_TMPDIR/te.h5" .
}

json() { # json KEY: the value of KEY in the JSON line in $output
    echo "$output" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}

@test "linprobe --help, --version, usage errors" {
    run "$LP" --help
    assert_success
    assert_output --partial "Usage: linprobe"
    run "$LP" --version
    assert_success
    run "$LP" tr.h5
    assert_failure 2
    run "$LP" --knn 0 tr.h5 te.h5
    assert_failure 2
    run "$LP" --knn-metric manhattan --knn 3 tr.h5 te.h5
    assert_failure 2
    run "$LP" --no-linear tr.h5 te.h5
    assert_failure 2
    run "$LP" --solver newton tr.h5 te.h5
    assert_failure 2
    assert_output --partial "--solver: 'newton' is not lbfgs or sgd"
    run "$LP" --epochs 0 --solver sgd tr.h5 te.h5
    assert_failure 2
    run "$LP" --save c.h5 --no-linear --knn 5 tr.h5 te.h5
    assert_failure 2
    [ ! -e c.h5 ]
}

@test "linprobe: Fashion-MNIST pixels, linear and kNN beat chance by far and match scikit-learn" {
    run "$LP" --standardize --knn 5 --knn-metric euclidean --save clf.h5 tr.h5 te.h5
    assert_success
    top1=$(json top1)
    knn=$(json knn_top1)
    # scikit-learn on the same 3000/1000 rows (LogisticRegression(C=1) on
    # standardised pixels; KNeighborsClassifier(5)) as the reference
    ref=$("$PY" -c "
import h5py, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
a=h5py.File('tr.h5'); b=h5py.File('te.h5')
X=a['images'][:].reshape(3000,-1)/255.; y=a['labels'][:]; Xt=b['images'][:].reshape(1000,-1)/255.; yt=b['labels'][:]
s=StandardScaler().fit(X)
lr=LogisticRegression(C=1, max_iter=300).fit(s.transform(X), y)
kn=KNeighborsClassifier(5).fit(X, y)
print(lr.score(s.transform(Xt), yt), kn.score(Xt, yt))" 2>/dev/null)
    echo "kdpipe $top1 $knn, scikit-learn $ref"
    "$PY" -c "import sys; t,k,a,b=map(float,sys.argv[1:]); sys.exit(0 if t >= a-0.01 and abs(k-b) <= 0.005 and t > 0.7 else 1)" $top1 $knn $ref
    run "$B/tensor-info" clf.h5
    assert_output --partial "kdpipe classifier file"
    assert_output --partial "weight                   f32  [10,784]"
    # the saved classifier reproduces the reported top-1 on the test set
    "$PY" -c "
import h5py, numpy as np, sys
c=h5py.File('clf.h5'); b=h5py.File('te.h5')
assert c.attrs['kdpipe_kind'] == 'classifier'
x=b['images'][:].reshape(1000,-1)/255.; y=b['labels'][:]
z=((x-c['mean'][:])/c['std'][:]) @ c['weight'][:].T + c['bias'][:]
acc=(z.argmax(1)==y).mean()
print(acc); sys.exit(0 if abs(acc-float(sys.argv[1])) < 1.5e-3 else 1)" $top1
}

@test "linprobe: --solver sgd on pixels, deterministic in --seed" {
    run "$LP" --standardize --solver sgd --epochs 5 --seed 3 tr.h5 te.h5
    assert_success
    assert_output --partial '"solver": "sgd", "epochs": 5'
    a=$(json top1) l=$(json loss)
    "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0.78 else 1)" $a
    run "$LP" --standardize --solver sgd --epochs 5 --seed 3 --threads 1 tr.h5 te.h5
    [ "$(json top1)" = "$a" ] && [ "$(json loss)" = "$l" ]
    run "$LP" --standardize --solver sgd --epochs 5 --seed 4 tr.h5 te.h5
    [ "$(json loss)" != "$l" ]
}

@test "linprobe: weighted cosine kNN on pixels (k=20, T=0.07)" {
    run "$LP" --no-linear --knn 20 tr.h5 te.h5
    assert_success
    assert_output --partial '"knn_k": 20, "knn_metric": "cosine"'
    refute_output --partial '"top1"'
    # brute-force check of the same rule in numpy
    "$PY" -c "
import h5py, numpy as np, sys
a=h5py.File('tr.h5'); b=h5py.File('te.h5')
X=a['images'][:].reshape(3000,-1)/255.; y=a['labels'][:]; Q=b['images'][:].reshape(1000,-1)/255.; yq=b['labels'][:]
X/=np.linalg.norm(X,axis=1,keepdims=True); Q/=np.linalg.norm(Q,axis=1,keepdims=True)
S=Q@X.T; idx=np.argsort(-S,axis=1,kind='stable')[:,:20]
votes=np.zeros((1000,10))
for i in range(1000): np.add.at(votes[i], y[idx[i]], np.exp(S[i,idx[i]]/0.07))
acc=(votes.argmax(1)==yq).mean(); print(acc)
sys.exit(0 if abs(acc-float(sys.argv[1])) <= 0.002 else 1)" $(json knn_top1)
}

@test "linprobe: cosine kNN on features files, and --score on logits" {
    "$PY" -c "
import h5py, numpy as np
r=np.random.default_rng(0)
for name,n in (('ftr.h5',400),('fte.h5',100)):
    y=(np.arange(n)%4).astype(np.int32)
    x=(r.normal(size=(n,8))+3*np.eye(8)[y]).astype(np.float32)
    f=h5py.File(name,'w'); f.attrs['kdpipe_format']=1; f.attrs['kdpipe_kind']='features'
    f['features']=x; f['labels']=y; f['logits']=x[:,:4]"
    run "$LP" --knn 20 ftr.h5 fte.h5
    assert_success
    assert_output --regexp '"knn_top1": (0\.9|1)'
    run "$LP" --score ftr.h5 fte.h5
    assert_success
    assert_output --regexp '"top1": (0\.9[0-9]*|1), "top5": 1,'
}

@test "linprobe: bad inputs" {
    run "$LP" missing.h5 te.h5
    assert_failure 1
    assert_output --partial "missing.h5: No such file"
    "$B/model-init" --arch resnet20 --num-classes 10 -o m.h5 >/dev/null
    run "$LP" m.h5 te.h5
    assert_failure 1
    assert_output --partial "is a kdpipe 'model' file"
    "$PY" -c "
import h5py, numpy as np
def mk(name, x, y):
    f=h5py.File(name,'w'); f.attrs['kdpipe_format']=1; f.attrs['kdpipe_kind']='features'; f['features']=x; f['labels']=y
mk('d3.h5', np.zeros((10,3),np.float32), np.zeros(10,np.int32))
mk('d4.h5', np.zeros((10,4),np.float32), np.zeros(10,np.int32))
x=np.zeros((10,3),np.float32); x[4,1]=np.nan; mk('nan.h5', x, np.zeros(10,np.int32))
mk('neg.h5', np.zeros((10,3),np.float32), -np.ones(10,np.int32))
mk('empty.h5', np.zeros((0,3),np.float32), np.zeros(0,np.int32))"
    run "$LP" d3.h5 d4.h5
    assert_failure 1
    assert_output --partial "d3.h5 has 3 features per row but d4.h5 has 4"
    run "$LP" --save c.h5 d3.h5 nan.h5
    assert_failure 1
    assert_output --partial "nan.h5: row 4 has a non-finite feature"
    [ ! -e c.h5 ]
    run "$LP" neg.h5 d3.h5
    assert_failure 1
    assert_output --partial "label -1 is out of range"
    run "$LP" empty.h5 d3.h5
    assert_failure 1
    assert_output --partial "empty.h5: /features is empty"
    run "$LP" --score d3.h5 d3.h5
    assert_failure 1
    assert_output --partial "no dataset 'logits'"
}

@test "linprobe --score: non-finite logits are refused, not scored top-1 = 1" {
    "$PY" -c "
import h5py, numpy as np
f=h5py.File('nanlog.h5','w'); f.attrs['kdpipe_format']=1; f.attrs['kdpipe_kind']='features'
f['features']=np.zeros((10,3),np.float32); f['labels']=np.arange(10,dtype=np.int32)
l=np.zeros((10,10),np.float32); l[7]=np.nan; f['logits']=l"
    run "$LP" --score nanlog.h5 nanlog.h5
    assert_failure 1
    assert_output "linprobe: nanlog.h5: row 7 has a non-finite logit"
}

@test "linprobe: results that cannot be written fail; an error leaves no partial JSON line" {
    run sh -c "'$LP' --no-linear --knn 5 tr.h5 te.h5 > /dev/full"
    assert_failure 1
    assert_output "linprobe: stdout: write failed (No space left on device)"
    run "$LP" --no-linear --knn 5000 --limit 300 tr.h5 te.h5
    assert_failure 1
    assert_output "linprobe: --knn 5000: the training set has only 300 rows"
}

@test "linprobe: more labels than images or rows are refused" {
    "$PY" -c "
import h5py, numpy as np
src = h5py.File('te.h5'); h = h5py.File('xl.h5', 'w')
for k, v in src.attrs.items(): h.attrs[k] = v
h['images'] = src['images'][:64]; h['labels'] = src['labels'][:70]
f=h5py.File('xf.h5','w'); f.attrs['kdpipe_format']=1; f.attrs['kdpipe_kind']='features'
f['features']=np.zeros((10,3),np.float32); f['labels']=np.zeros(11,np.int32)"
    run "$LP" --knn 5 --no-linear xl.h5 xl.h5
    assert_failure 1
    assert_output "linprobe: xl.h5: /labels has 70 entries for 64 images"
    run "$LP" --knn 5 --no-linear xf.h5 xf.h5
    assert_failure 1
    assert_output "linprobe: xf.h5: 11 labels for 10 rows"
}

@test "linprobe: a small file declaring millions of never-written rows is refused before anything is allocated" {
    "$PY" -c "
import h5py, shutil
shutil.copy('te.h5', 'liar.h5'); shutil.copy('te.h5', 'part.h5')
with h5py.File('liar.h5', 'a') as f:
    for k in ('images', 'labels'):
        sh = (2000000,) + f[k].shape[1:]; dt = f[k].dtype; del f[k]
        f.create_dataset(k, shape=sh, dtype=dt, chunks=(1000,) + sh[1:])
with h5py.File('part.h5', 'a') as f:
    im = f['images'][:100]; del f['images']
    f.create_dataset('images', shape=(1000,) + im.shape[1:], dtype='u1', chunks=(50,) + im.shape[1:])[:100] = im
    f.create_dataset('features', shape=(3, 4), dtype='f4')"
    [ "$(stat -c %s liar.h5)" -lt 100000 ]
    run /usr/bin/time -f "%M KB" "$LP" liar.h5 te.h5
    assert_failure 1
    assert_line --index 0 "linprobe: liar.h5: dataset 'images' declares 2000000 rows that were never written"
    [ "${lines[2]% KB}" -lt 100000 ]
    run "$LP" part.h5 te.h5
    assert_failure 1
    assert_output "linprobe: part.h5: dataset 'images' declares 1000 rows that were never all written"
    run "$B/tensor-info" part.h5
    assert_failure 1
}
