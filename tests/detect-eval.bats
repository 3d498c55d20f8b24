#!/usr/bin/env bats
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

DE="$BATS_TEST_DIRNAME/../bin/detect-eval"
FX="$BATS_TEST_DIRNAME/fixtures/coco"
PY=/usr/bin/python3

setup() { cd "$BATS_TEST_TMPDIR"; }

@test "detect-eval --help, --version, usage errors" {
    run "$DE" --help
    assert_success
    assert_output --partial "Usage: detect-eval"
    run "$DE" --version
    assert_success
    run "$DE" --gt "$FX/case11/gt.json"
    assert_failure 2
    assert_output --partial "both --gt and --dets are required"
    run "$DE" --gt a --dets b extra
    assert_failure 2
    run "$DE" --gt - --dets -
    assert_failure 2
    run "$DE" --iou-type segm --gt "$FX/case11/gt.json" --dets "$FX/case11/dets.json"
    assert_failure 2
    assert_output --partial "only bbox"
    # standard input, --voc and --iou-type bbox accepted, same numbers
    "$DE" --gt "$FX/case11/gt.json" --dets "$FX/case11/dets.json" > a.json
    "$DE" --voc --iou-type bbox --gt - --dets "$FX/case11/dets.json" < "$FX/case11/gt.json" > b.json
    "$DE" --gt "$FX/case11/gt.json" --dets - < "$FX/case11/dets.json" > c.json
    cmp a.json b.json
    cmp a.json c.json
}

@test "detect-eval equals pycocotools' stats on every fixture case within 1e-6" {
    # case11-14: ../shared/fixtures/coco; case_*: tests/gen/coco.py (ties,
    # crowd, >100 detections per image, categories/images without ground
    # truth, area-range boundaries, no detections)
    for c in "$FX"/case*; do
        run "$DE" --per-class --gt "$c/gt.json" --dets "$c/dets.json"
        assert_success
        echo "$output" > out.json
        run "$PY" -c "
import json,os
a=json.load(open('out.json')); b=json.load(open('$c/expected.json'))
keys=['AP','AP50','AP75','APs','APm','APl','AR1','AR10','AR100','ARs','ARm','ARl']
assert sorted(b) == sorted(keys), sorted(b)
bad=[(k,a[k],b[k]) for k in keys if abs(a[k]-b[k]) > 1e-6]
# tests/gen/coco.py cases also carry pycocotools' per-category AP
if os.path.exists('$c/per_class.json'):
    p=json.load(open('$c/per_class.json'))
    assert sorted(p) == sorted(a['per_class']), (sorted(p), sorted(a['per_class']))
    bad+=[(k,a['per_class'][k]['AP'],p[k]) for k in p if abs(a['per_class'][k]['AP']-p[k]) > 1e-6]
# and VOC AP50 restated from detect-eval(1)'s rules
if os.path.exists('$c/voc.json'):
    v=json.load(open('$c/voc.json'))
    bad+=[(k,a[k],v[k]) for k in ('voc_ap50_11pt','voc_ap50_all') if abs(a[k]-v[k]) > 1e-6]
    bad+=[(k,a['per_class'][k]['voc_ap50'],v['per_class'][k]) for k in v['per_class'] if abs(a['per_class'][k]['voc_ap50']-v['per_class'][k]) > 1e-6]
print('$(basename $c)', 'ok' if not bad else bad)"
        assert_output "$(basename $c) ok"
    done
}

@test "detect-eval: perfect detections give AP 1; per-class and VOC; a category without ground truth is -1" {
    "$PY" -c "
import json
g={'images':[{'id':i} for i in (1,2)],'categories':[{'id':1,'name':'a'},{'id':2,'name':'b'},{'id':3,'name':'none'}],
   'annotations':[{'id':1,'image_id':1,'category_id':1,'bbox':[10,10,40,40],'area':1600,'iscrowd':0},
                  {'id':2,'image_id':2,'category_id':2,'bbox':[5,5,100,100],'area':10000,'iscrowd':0}]}
d=[{'image_id':1,'category_id':1,'bbox':[10,10,40,40],'score':0.9},{'image_id':2,'category_id':2,'bbox':[5,5,100,100],'score':0.8}]
json.dump(g,open('g.json','w')); json.dump(d,open('d.json','w')); json.dump([],open('empty.json','w'))"
    run "$DE" --per-class --gt g.json --dets d.json
    assert_success
    echo "$output" > out.json
    run "$PY" -c "
import json; a=json.load(open('out.json'))
print([round(a[k], 9) for k in ('AP','AP50','AP75','APs','APm','APl','AR100','voc_ap50_11pt','voc_ap50_all')], a['per_class']['3'])"
    assert_output "[1.0, 1.0, 1.0, -1, 1.0, 1.0, 1, 1, 1] {'name': 'none', 'AP': -1, 'voc_ap50': -1}"
    # no detections at all: zeros where there is ground truth (pycocotools' loadRes
    # refuses an empty list; the arithmetic with no detections gives these)
    run "$DE" --gt g.json --dets empty.json
    assert_success
    assert_output --partial '"AP": 0, "AP50": 0'
    assert_output --partial '"AR100": 0'
}

@test "detect-eval: HDF5 ground truth and detections give the JSON result" {
    "$PY" -c "
import json, h5py, numpy as np
g=json.load(open('$FX/case11/gt.json')); d=json.load(open('$FX/case11/dets.json'))
ids=sorted(i['id'] for i in g['images']); row={i:r for r,i in enumerate(ids)}
anns=sorted(g['annotations'], key=lambda a: row[a['image_id']])   # stable: file order within an image
f=h5py.File('gt.h5','w'); f.attrs['kdpipe_format']=1; f.attrs['kdpipe_kind']='dataset'
f['images']=np.zeros((len(ids),96,96,1),np.uint8); f['labels']=np.zeros(len(ids),np.int32)   # case11's images are 96x96: boxes lie inside
f['boxes']=np.array([a['bbox'] for a in anns],np.float32)
f['box_labels']=np.array([a['category_id'] for a in anns],np.int32)
f['box_crowd']=np.array([a['iscrowd'] for a in anns],np.uint8)
off=np.zeros(len(ids)+1,np.int64)
for a in anns: off[row[a['image_id']]+1]+=1
f['box_offsets']=np.cumsum(off)
h=h5py.File('dt.h5','w'); h.attrs['kdpipe_format']=1; h.attrs['kdpipe_kind']='detections'
h['boxes']=np.array([x['bbox'] for x in d],np.float32); h['scores']=np.array([x['score'] for x in d],np.float32)
h['labels']=np.array([x['category_id'] for x in d],np.int32); h['image_ids']=np.array([row[x['image_id']] for x in d],np.int64)
# the same boxes as JSON with float32 coordinates and w*h areas, categories 0..max
cats=max(c['id'] for c in g['categories'])+1
gj={'images':[{'id':r} for r in range(len(ids))],'categories':[{'id':k} for k in range(cats)],
    'annotations':[{'id':n+1,'image_id':row[a['image_id']],'category_id':a['category_id'],'iscrowd':a['iscrowd'],
                    'bbox':[float(v) for v in np.array(a['bbox'],np.float32)],
                    'area':float(np.float32(a['bbox'][2])*np.float32(a['bbox'][3]))} for n,a in enumerate(anns)]}
dj=[{'image_id':row[x['image_id']],'category_id':x['category_id'],'bbox':[float(v) for v in np.array(x['bbox'],np.float32)],
     'score':float(np.float32(x['score']))} for x in d]
json.dump(gj,open('g.json','w')); json.dump(dj,open('d.json','w'))"
    a=$("$DE" --gt gt.h5 --dets dt.h5)
    b=$("$DE" --gt g.json --dets d.json)
    [ -n "$a" ] && [ "$a" = "$b" ]
    # a NaN score in a detections file
    "$PY" -c "
import h5py
h=h5py.File('dt.h5','r+'); s=h['scores'][:]; s[3]=float('nan'); h['scores'][:]=s"
    run "$DE" --gt gt.h5 --dets dt.h5
    assert_failure 1
    assert_output --partial "dt.h5: detection 3 has a non-finite score"
}

@test "detect-eval: detections as a tensor stream (file or pipe) give the JSON result" {
    "$PY" -c "
import json, sys, numpy as np
sys.path.insert(0, '$BATS_TEST_DIRNAME/../examples'); import kdt
d = json.load(open('$FX/case11/dets.json'))
box = np.array([x['bbox'] for x in d], np.float32); sc = np.array([x['score'] for x in d], np.float32)
lab = np.array([x['category_id'] for x in d], np.int32); img = np.array([x['image_id'] for x in d], np.int64)
# the same detections as JSON, with the stream's float32 values
json.dump([{'image_id': int(img[q]), 'category_id': int(lab[q]), 'bbox': [float(v) for v in box[q]],
            'score': float(sc[q])} for q in range(len(d))], open('d32.json', 'w'))
h = len(d) // 2
with open('d.kdt', 'wb') as f, kdt.Writer(f) as w:   # two frames; image ids i64 in one, i32 in the other
    w.write({}, {'boxes': box[:h], 'scores': sc[:h], 'labels': lab[:h], 'image_ids': img[:h]})
    w.write({}, {'boxes': box[h:], 'scores': sc[h:], 'labels': lab[h:], 'image_ids': img[h:].astype(np.int32)})
with open('nolab.kdt', 'wb') as f, kdt.Writer(f) as w:
    w.write({}, {'boxes': box, 'scores': sc, 'image_ids': img})
"
    a=$("$DE" --gt "$FX/case11/gt.json" --dets d32.json)
    b=$("$DE" --gt "$FX/case11/gt.json" --dets d.kdt)
    c=$("$DE" --gt "$FX/case11/gt.json" --dets - < d.kdt)
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]
    # truncated, a missing tensor, an HDF5 file through a pipe
    head -c 300 d.kdt > short.kdt
    run "$DE" --gt "$FX/case11/gt.json" --dets short.kdt
    assert_failure 1
    assert_output --partial "detect-eval: short.kdt: frame 0"
    run "$DE" --gt "$FX/case11/gt.json" --dets nolab.kdt
    assert_failure 1
    assert_output --partial "nolab.kdt: frame 0"
    assert_output --partial "labels"
    "$PY" -c "import h5py; h5py.File('x.h5', 'w')"
    run sh -c "'$DE' --gt '$FX/case11/gt.json' --dets - < x.h5"
    assert_failure 1
    assert_output --partial "cannot be read from standard input"
}

@test "detect-eval: bad inputs fail clearly" {
    cp "$FX/case11/gt.json" g.json
    echo '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3' > broken.json
    run "$DE" --gt g.json --dets broken.json
    assert_failure 1
    assert_output --partial "detect-eval: broken.json: line"
    echo '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.5}]' > neg.json
    run "$DE" --gt g.json --dets neg.json
    assert_failure 1
    assert_output --partial "neg.json: result 0: \"bbox\" has a negative size"
    echo '[{"image_id": 999, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]' > img.json
    run "$DE" --gt g.json --dets img.json
    assert_failure 1
    assert_output --partial "image id 999 is not in the ground truth"
    echo '[{"image_id": 1, "category_id": 77, "bbox": [1, 2, 3, 4], "score": 0.5}]' > cat.json
    run "$DE" --gt g.json --dets cat.json
    assert_failure 1
    assert_output --partial "category id 77 is not in the ground truth"
    echo '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": "high"}]' > nan.json
    run "$DE" --gt g.json --dets nan.json
    assert_failure 1
    assert_output --partial "\"score\" is not a number"
    echo '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]' > nan2.json
    run "$DE" --gt g.json --dets nan2.json
    assert_failure 1
    run "$DE" --gt missing.json --dets nan.json
    assert_failure 1
    assert_output --partial "missing.json"
    # a fault in the ground truth is reported against the ground truth file
    "$PY" -c "
import json; g=json.load(open('g.json')); g['images'].append(g['images'][0]); json.dump(g,open('gdup.json','w'))"
    run "$DE" --gt gdup.json --dets "$FX/case11/dets.json"
    assert_failure 1
    assert_output --partial "detect-eval: gdup.json: image id 1 appears twice"
    echo '{"images": []}' > notcoco.json
    run "$DE" --gt notcoco.json --dets nan.json
    assert_failure 1
    assert_output --partial "not COCO annotations"
}

@test "detect-eval: an unwritable standard output is an error with a message" {
    run sh -c "'$DE' --gt '$FX/case11/gt.json' --dets '$FX/case11/dets.json' > /dev/full"
    assert_failure 1
    assert_output "detect-eval: stdout: write failed (No space left on device)"
}

@test "detect-eval: COCO JSON as pycocotools takes it; bad fields named, not guessed" {
    cat > gt.json <<'J'
{"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "a\u0007b"}],
 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": false},
                 {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": true}]}
J
    echo '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}, {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.8}]' > dt.json
    sed 's/"iscrowd": true/"iscrowd": 1/; s/"iscrowd": false/"iscrowd": 0/' gt.json > gt01.json
    run "$DE" --per-class --gt gt.json --dets dt.json
    assert_success
    booleans="$output"
    assert_output --partial '"name": "a\u0007b"'       # a control character escaped, not dropped
    run "$DE" --per-class --gt gt01.json --dets dt.json
    assert_success
    [ "$output" = "$booleans" ]                          # true/false are 1/0, as in pycocotools
    sed 's/"area": 100/"area": "big"/' gt.json > g2.json
    run "$DE" --gt g2.json --dets dt.json
    assert_failure 1
    assert_output 'detect-eval: g2.json: annotation 0: "area" is not a number'
    sed 's/{"id": 2}/{"id": 1e300}/' gt.json > g3.json
    run "$DE" --gt g3.json --dets dt.json
    assert_failure 1
    assert_output 'detect-eval: g3.json: image 1: "id" is not an integer'
    run "$DE" --gt nope.json --dets dt.json
    assert_failure 1
    assert_output "detect-eval: nope.json: No such file or directory"
    run "$DE" --gt . --dets dt.json
    assert_failure 1
    assert_output "detect-eval: .: Is a directory"
}
