#!/bin/sh
# Look inside what a pipeline wrote: every kdpipe file is HDF5 (h5ls, h5py)
# and every stream is readable by tensor-info.  Usage: examples/inspect.sh DATASET.h5 OUTDIR
set -e
kd=$(dirname "$0")/../bin
ds=$1 out=$2
mkdir -p "$out"
h5ls -r "$ds"
"$kd/tensor-info" "$ds"
"$kd/augment" --policy mocov2 --views 2 --batch 16 --limit 32 --quiet "$ds" | "$kd/tensor-info" --png "$out/views" -
/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1]); print(dict(f.attrs)['kdpipe_kind'], f['images'].shape)" "$ds"
