#!/usr/bin/python3
"""Python peer of `dataset` for bench/dataset.sh: reads the Fashion-MNIST IDX
files with gzip + NumPy and writes the same layout with h5py (chunked,
shuffle + deflate, mean/std attributes).  Usage: dataset_peer.py DIR OUT.h5"""
import gzip, sys
import h5py, numpy as np

src, out = sys.argv[1], sys.argv[2]
raw = gzip.open(src + "/train-images-idx3-ubyte.gz").read()
n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
img = np.frombuffer(raw, np.uint8, n * h * w, 16).reshape(n, h, w, 1)
lab = np.frombuffer(gzip.open(src + "/train-labels-idx1-ubyte.gz").read(), np.uint8, n, 8)
x = img.astype(np.float64) / 255
with h5py.File(out, "w") as f:
    f.create_dataset("images", data=img, chunks=(256, h, w, 1), maxshape=(None, h, w, 1),
                     shuffle=True, compression="gzip", compression_opts=4)
    f.create_dataset("labels", data=lab.astype(np.int32), chunks=True, maxshape=(None,),
                     shuffle=True, compression="gzip", compression_opts=4)
    f.attrs["kdpipe_format"] = 1
    f.attrs["kdpipe_kind"] = "dataset"
    f.attrs["mean"] = x.mean(axis=(0, 1, 2)).astype(np.float32)
    f.attrs["std"] = x.std(axis=(0, 1, 2)).astype(np.float32)
