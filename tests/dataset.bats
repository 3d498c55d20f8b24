#!/usr/bin/env bats
# dataset: ingest Fashion-MNIST (IDX), CIFAR batches and PNG folders.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

DS="$BATS_TEST_DIRNAME/../bin/dataset"
FM=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3

count() { # FILE: n and per-class counts
    "$PY" -c "import h5py,numpy as np,sys; f=h5py.File(sys.argv[1]); print(f['images'].shape, list(np.bincount(f['labels'][:])))" "$1"
}

@test "dataset --help and --version" {
    run "$DS" --help
    assert_success
    assert_output --partial "Usage: dataset"
    run "$DS" --version
    assert_success
    assert_output --partial "BLIS kernels"
}

@test "dataset: usage errors exit 2" {
    run "$DS"
    assert_failure 2
    assert_output --partial "missing SOURCE"
    run "$DS" "$FM"
    assert_failure 2
    assert_output --partial "missing -o"
    run "$DS" --split validation "$FM" -o x.h5
    assert_failure 2
    run "$DS" --limit 0 "$FM" -o x.h5
    assert_failure 2
    run "$DS" --bogus "$FM" -o x.h5
    assert_failure 2
}

@test "dataset: Fashion-MNIST from the Debian package, both splits" {
    cd "$BATS_TEST_TMPDIR"
    run "$DS" "$FM" --split train -o train.h5
    assert_success
    assert_output --partial '"n": 60000'
    run count train.h5
    assert_output "(60000, 28, 28, 1) [6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000]"
    run "$DS" "$FM" --split test -o test.h5
    assert_success
    run count test.h5
    assert_output "(10000, 28, 28, 1) [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]"
    run "$PY" -c "import h5py; f=h5py.File('train.h5'); a=f.attrs; print(a['kdpipe_kind'], a['classes'][0], round(float(a['mean'][0]),4), round(float(a['std'][0]),4))"
    assert_output "dataset T-shirt/top 0.286 0.353"
}

@test "dataset: --limit and a single IDX file path" {
    cd "$BATS_TEST_TMPDIR"
    run "$DS" --limit 100 "$FM/t10k-images-idx3-ubyte.gz" -o small.h5
    assert_success
    assert_output --partial '"n": 100'
    # pixel-exact against the raw IDX bytes
    run "$PY" -c "
import gzip,h5py,numpy as np
raw=np.frombuffer(gzip.open('$FM/t10k-images-idx3-ubyte.gz').read()[16:16+100*784],np.uint8).reshape(100,28,28,1)
lab=np.frombuffer(gzip.open('$FM/t10k-labels-idx1-ubyte.gz').read()[8:108],np.uint8)
f=h5py.File('small.h5'); print(np.array_equal(f['images'][:],raw), np.array_equal(f['labels'][:],lab))"
    assert_output "True True"
}

@test "dataset: CIFAR batch and PNG folder ingest pixel-exactly" {
    cd "$BATS_TEST_TMPDIR"
    "$PY" "$BATS_TEST_DIRNAME/gen/mkimages.py" .
    run "$DS" --format cifar . -o c.h5
    assert_success
    run "$DS" folder -o f.h5
    assert_success
    assert_output --partial '"c": 3'
    run "$PY" -c "
import h5py,numpy as np
for k,n in (('c','cifar'),('f','folder')):
    f=h5py.File(k+'.h5'); print(np.array_equal(f['images'][:],np.load(n+'_images.npy')), np.array_equal(f['labels'][:],np.load(n+'_labels.npy')))"
    assert_output $'True True\nTrue True'
}

@test "dataset: CIFAR-100 with fine_label_names.txt, CIFAR-10 batches.meta.txt names" {
    cd "$BATS_TEST_TMPDIR"
    "$PY" "$BATS_TEST_DIRNAME/gen/mkimages.py" .
    run "$DS" cifar100 -o c100.h5
    assert_success
    assert_output --partial '"classes": 100'
    run "$PY" -c "
import h5py,numpy as np
f=h5py.File('c100.h5'); print(np.array_equal(f['images'][:],np.load('cifar100_images.npy')), np.array_equal(f['labels'][:],np.load('cifar100_labels.npy')), f.attrs['classes'][99])"
    assert_output "True True class99"
    printf 'p0\np1\n\n p2 \np3\np4\np5\np6\np7\np8\np9\n\n' > batches.meta.txt
    run "$DS" data_batch_1.bin -o c10.h5
    assert_success
    run "$PY" -c "import h5py; print(' '.join(h5py.File('c10.h5').attrs['classes']))"
    assert_output "p0 p1 p2 p3 p4 p5 p6 p7 p8 p9"
    echo "just one" > batches.meta.txt
    run "$DS" --format cifar . -o c10b.h5
    assert_success
    assert_output --partial "1 class names, expected 10; using CIFAR-10 names"
}

@test "dataset: half-transparent PNG pixels are composited onto black in linear light" {
    cd "$BATS_TEST_TMPDIR"
    mkdir -p al/x
    "$PY" -c "
import struct,zlib
def ch(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)
open('al/x/a.png','wb').write(b'\x89PNG\r\n\x1a\n'+ch(b'IHDR',struct.pack('>IIBBBBB',3,1,8,4,0,0,0))+ch(b'IDAT',zlib.compress(b'\0'+bytes([200,128,200,255,100,0])))+ch(b'IEND',b''))"
    run "$DS" al -o al.h5
    assert_success
    assert_output --partial '"c": 1'
    run "$PY" -c "import h5py; print(list(h5py.File('al.h5')['images'][:].ravel()))"
    assert_output "[146, 200, 0]"
}

@test "dataset: mixed PNG sizes are refused unless --resize" {
    cd "$BATS_TEST_TMPDIR"
    "$PY" "$BATS_TEST_DIRNAME/gen/mkimages.py" .
    "$DS" --format cifar . -o c.h5 >/dev/null
    cp folder/a_cat/1.png folder/b_dog/9.png
    "$PY" -c "
import struct,zlib
def ch(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)
open('folder/b_dog/9.png','wb').write(b'\x89PNG\r\n\x1a\n'+ch(b'IHDR',struct.pack('>IIBBBBB',3,3,8,0,0,0,0))+ch(b'IDAT',zlib.compress(b'\0abc'*3))+ch(b'IEND',b''))"
    run "$DS" folder -o m.h5
    assert_failure 1
    assert_output --partial "use --resize"
    [ ! -e m.h5 ]
    run "$DS" --resize 8x6 folder -o m.h5
    assert_success
    assert_output --partial '"h": 8, "w": 6'
}

@test "dataset: an IDX label beyond the format's classes is refused (no 256-class dataset)" {
    cd "$BATS_TEST_TMPDIR"
    mkdir fashion && cp "$FM"/t10k-*.gz fashion/
    gunzip fashion/t10k-labels-idx1-ubyte.gz
    printf '\xff' | dd of=fashion/t10k-labels-idx1-ubyte bs=1 seek=$((8 + 3)) conv=notrunc 2>/dev/null
    run "$DS" --split test fashion -o out.h5
    assert_failure 1
    assert_output "dataset: fashion/t10k-labels-idx1-ubyte: label 255 of image 3 is out of range (the MNIST family has 10 classes: 0..9)"
    [ ! -e out.h5 ]
}

@test "dataset: bad inputs fail clearly and leave no output" {
    cd "$BATS_TEST_TMPDIR"
    mkdir idx && cp "$FM"/t10k-*.gz idx/
    gunzip idx/t10k-images-idx3-ubyte.gz
    # wrong magic
    printf '\x00\x00\x09\x03' | dd of=idx/t10k-images-idx3-ubyte conv=notrunc 2>/dev/null
    run "$DS" --split test idx -o out.h5
    assert_failure 1
    assert_output --partial "t10k-images-idx3-ubyte: IDX type 0x09"
    [ ! -e out.h5 ]
    # short file
    cp "$FM/t10k-images-idx3-ubyte.gz" idx/ && rm idx/t10k-images-idx3-ubyte
    gunzip idx/t10k-images-idx3-ubyte.gz && truncate -s 5000 idx/t10k-images-idx3-ubyte
    run "$DS" --split test idx -o out.h5
    assert_failure 1
    assert_output --partial "short file"
    [ ! -e out.h5 ]
    # corrupt gzip stream (one flipped byte inside the deflate data)
    rm idx/t10k-images-idx3-ubyte
    "$PY" -c "
b=bytearray(open('$FM/t10k-images-idx3-ubyte.gz','rb').read()); b[5000]^=0xff; open('idx/t10k-images-idx3-ubyte.gz','wb').write(b)"
    run "$DS" --split test idx -o out.h5
    assert_failure 1
    assert_output --partial "t10k-images-idx3-ubyte.gz: corrupt gzip data"
    [ ! -e out.h5 ]
    # label out of range (CIFAR label 10)
    "$PY" -c "open('data_batch_1.bin','wb').write(bytes([10])+bytes(3072))"
    run "$DS" --format cifar . -o out.h5
    assert_failure 1
    assert_output --partial "label 10 out of range"
    [ ! -e out.h5 ]
    # empty folder, unreadable PNG, missing source
    mkdir -p empty pics/x
    run "$DS" --format folder empty -o out.h5
    assert_failure 1
    assert_output --partial "no class directories"
    echo "not a png" > pics/x/a.png
    run "$DS" pics -o out.h5
    assert_failure 1
    assert_output --partial "pics/x/a.png: unreadable PNG"
    run "$DS" nowhere -o out.h5
    assert_failure 1
    assert_output --partial "nowhere: No such file"
    [ ! -e out.h5 ]
}

@test "dataset: a failed run leaves an existing output untouched" {
    cd "$BATS_TEST_TMPDIR"
    "$DS" --limit 10 "$FM" -o keep.h5 > /dev/null
    before=$(md5sum < keep.h5)
    run "$DS" --format cifar "$FM" -o keep.h5
    assert_failure 1
    [ "$(md5sum < keep.h5)" = "$before" ]
    [ "$(ls -A)" = "keep.h5" ]
}
