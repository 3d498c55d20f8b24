#!/usr/bin/python3
"""kdt.py: read and write the kdpipe tensor stream (kdt(5)) with NumPy alone.

    import sys, kdt
    for meta, tensors in kdt.read_frames(sys.stdin.buffer):
        tensors["view0"] += 0.1            # any change; new tensors welcome
        kdt.write_frame(sys.stdout.buffer, meta, tensors)

meta is a dict of str -> str (epoch, step, ...), tensors a dict of name ->
ndarray (uint8, int32, int64 or float32), in stream order.  Frames are
checked as the C reader checks them: magic, version, sizes, CRC-32.
Run as a script it copies a stream (stdin to stdout) through NumPy.
"""
import struct
import sys
import zlib

import numpy as np

MAGIC = b"KDT\n"
VERSION = 1
HEADER = struct.Struct("<4sHHIIQQII")  # 40 bytes
DTYPES = {1: np.dtype("u1"), 2: np.dtype("<i4"), 3: np.dtype("<i8"), 4: np.dtype("<f4")}
CODES = {v.str[1:]: k for k, v in DTYPES.items()}  # "u1", "i4", "i8", "f4"


class StreamError(Exception):
    pass


def _read_exact(f, n):
    b = f.read(n)
    while len(b) < n:
        more = f.read(n - len(b))
        if not more:
            break
        b += more
    return b


def read_frames(f):
    """Yield (meta, tensors) for each frame of a binary file object."""
    offset = 0
    k = 0
    while True:
        h = _read_exact(f, HEADER.size)
        if not h:
            return
        where = "frame %d at byte %d" % (k, offset)
        if len(h) < HEADER.size:
            raise StreamError("%s: truncated frame header" % where)
        magic, ver, flags, nt, nm, stored, raw, crc, res = HEADER.unpack(h)
        if magic != MAGIC:
            raise StreamError("%s: bad magic" % where)
        if ver != VERSION or flags & ~1 or res:
            raise StreamError("%s: unsupported version or flags" % where)
        payload = _read_exact(f, stored)
        if len(payload) < stored:
            raise StreamError("%s: truncated payload" % where)
        if zlib.crc32(payload, zlib.crc32(h[:32])) != crc:
            raise StreamError("%s: CRC mismatch" % where)
        if flags & 1:
            payload = zlib.decompress(payload)
        if len(payload) != raw:
            raise StreamError("%s: payload size mismatch" % where)
        p = 0
        meta = {}
        for _ in range(nm):
            (kl,) = struct.unpack_from("<H", payload, p)
            key = payload[p + 2:p + 2 + kl].decode()
            p += 2 + kl
            (vl,) = struct.unpack_from("<H", payload, p)
            meta[key] = payload[p + 2:p + 2 + vl].decode()
            p += 2 + vl
        tensors = {}
        for _ in range(nt):
            (nl,) = struct.unpack_from("<H", payload, p)
            name = payload[p + 2:p + 2 + nl].decode()
            p += 2 + nl
            code, rank = payload[p], payload[p + 1]
            p += 4
            dims = struct.unpack_from("<%dQ" % rank, payload, p)
            p += 8 * rank
            (nbytes,) = struct.unpack_from("<Q", payload, p)
            p += 8
            if code not in DTYPES:
                raise StreamError("%s: tensor %r: unknown dtype %d" % (where, name, code))
            dt = DTYPES[code]
            if nbytes != int(np.prod(dims, dtype=np.int64)) * dt.itemsize or p + nbytes > len(payload):
                raise StreamError("%s: tensor %r: bad size" % (where, name))
            tensors[name] = np.frombuffer(payload, dt, int(nbytes // dt.itemsize), p).reshape(dims).copy()
            p += nbytes
        if p != len(payload):
            raise StreamError("%s: trailing bytes in payload" % where)
        offset += HEADER.size + stored
        k += 1
        yield meta, tensors


def encode_frame(meta, tensors, deflate=False):
    """The bytes of one frame."""
    parts = []
    for key, val in meta.items():
        kb, vb = str(key).encode(), str(val).encode()
        parts += [struct.pack("<H", len(kb)), kb, struct.pack("<H", len(vb)), vb]
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        code = CODES.get(a.dtype.newbyteorder("<").str[1:] if a.dtype.itemsize > 1 else "u1")
        if code is None or (a.dtype.kind == "u" and a.dtype.itemsize != 1):
            raise StreamError("tensor %r: dtype %s is not u8, i32, i64 or f32" % (name, a.dtype))
        a = a.astype(DTYPES[code], copy=False)
        nb = name.encode()
        parts += [struct.pack("<H", len(nb)), nb, struct.pack("<BBH", code, a.ndim, 0),
                  struct.pack("<%dQ" % a.ndim, *a.shape), struct.pack("<Q", a.nbytes), a.tobytes()]
    payload = b"".join(parts)
    raw = len(payload)
    if deflate:
        payload = zlib.compress(payload, 1)
    head = struct.pack("<4sHHIIQQ", MAGIC, VERSION, 1 if deflate else 0, len(tensors), len(meta),
                       len(payload), raw)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<II", crc, 0) + payload


def write_frame(f, meta, tensors, deflate=False):
    f.write(encode_frame(meta, tensors, deflate))


if __name__ == "__main__":
    try:
        for meta, tensors in read_frames(sys.stdin.buffer):
            write_frame(sys.stdout.buffer, meta, tensors)
    except StreamError as e:
        sys.stderr.write("kdt.py: %s\n" % e)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
