#!/usr/bin/python3
"""kdt.py: read and write the kdpipe tensor stream (kdt(5)) with NumPy alone.

    import sys, kdt
    with kdt.Writer(sys.stdout.buffer) as w:
        for meta, tensors in kdt.read_frames(sys.stdin.buffer):
            tensors["view0"] += 0.1        # any change; new tensors welcome
            w.write(meta, tensors)

meta is a dict of str -> str (epoch, step, ...), tensors a dict of name ->
ndarray (uint8, int32, int64 or float32), in stream order.  Frames are
checked as the C reader checks them: magic, version, sizes, CRC-32.  A
stream ends with an end marker: read_frames raises StreamError at EOF
without it (the writer died), and Writer writes it when its block ends
without an exception (write_end writes it by hand).
Run as a script it copies a stream (stdin to stdout) through NumPy.
"""
import struct
import sys
import zlib

import numpy as np

MAGIC = b"KDT\n"
VERSION = 1
F_DEFLATE, F_END = 1, 2
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
            raise StreamError("the stream ended without its end marker (the writer died?) after %d frame%s"
                              % (k, "" if k == 1 else "s"))
        where = "frame %d at byte %d" % (k, offset)
        if len(h) < HEADER.size:
            raise StreamError("%s: truncated frame header" % where)
        magic, ver, flags, nt, nm, stored, raw, crc, res = HEADER.unpack(h)
        if magic != MAGIC:
            raise StreamError("%s: bad magic" % where)
        if ver != VERSION or flags & ~(F_DEFLATE | F_END) or flags == F_DEFLATE | F_END or res:
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
        if flags & F_END:
            if nt != 0 or payload != _end_payload(k):
                raise StreamError("%s: a malformed end marker" % where)
            if f.read(1):
                raise StreamError("%s: data after the end marker" % where)
            return
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


def _meta_parts(meta):
    parts = []
    for key, val in meta.items():
        kb, vb = str(key).encode(), str(val).encode()
        parts += [struct.pack("<H", len(kb)), kb, struct.pack("<H", len(vb)), vb]
    return parts


def encode_frame(meta, tensors, deflate=False):
    """The bytes of one frame."""
    parts = _meta_parts(meta)
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


def _end_payload(frames):
    return b"".join(_meta_parts({"frames": frames}))


def write_end(f, frames):
    """The end marker after `frames` frames: flags 2, no tensors, one entry frames=N."""
    payload = _end_payload(frames)
    head = struct.pack("<4sHHIIQQ", MAGIC, VERSION, F_END, 0, 1, len(payload), len(payload))
    f.write(head + struct.pack("<II", zlib.crc32(payload, zlib.crc32(head)), 0) + payload)


class Writer:
    """Counts the frames and writes the end marker when a `with` block ends
    normally; after an exception the stream is left without it, so that the
    next stage fails instead of taking a short stream for a complete one."""

    def __init__(self, f, deflate=False):
        self.f, self.deflate, self.frames = f, deflate, 0

    def write(self, meta, tensors):
        write_frame(self.f, meta, tensors, self.deflate)
        self.frames += 1

    def close(self):
        write_end(self.f, self.frames)
        self.f.flush()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.close()
        return False


if __name__ == "__main__":
    try:
        with Writer(sys.stdout.buffer) as w:
            for meta, tensors in read_frames(sys.stdin.buffer):
                w.write(meta, tensors)
    except StreamError as e:
        sys.stderr.write("kdt.py: %s\n" % e)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
