/* The kdpipe tensor stream, version 1.  Byte layout (all little-endian),
 * documented for users in man/man5/kdt.5:
 *
 *   header, 40 bytes
 *     0  magic     "KDT\n"
 *     4  u16 version (1)
 *     6  u16 flags   (bit 0: payload deflated with zlib)
 *     8  u32 ntensors
 *    12  u32 nmeta
 *    16  u64 stored   bytes of payload that follow the header
 *    24  u64 raw      bytes of payload once inflated (== stored if not deflated)
 *    32  u32 crc      CRC-32 (zlib) of header bytes 0..31 and the stored payload
 *    36  u32 reserved (0)
 *   payload (raw form)
 *     nmeta times:    u16 klen, key[klen], u16 vlen, val[vlen]
 *     ntensors times: u16 nlen, name[nlen], u8 dtype (1 u8, 2 i32, 3 i64, 4 f32),
 *                     u8 rank, u16 0, u64 dims[rank], u64 nbytes, data[nbytes]
 *
 * A writer that closes cleanly ends the stream with an end marker: a frame
 * with flags 2, no tensors and one metadata entry "frames" = the number of
 * frames before it.  EOF without it means the writer died, so a consumer
 * fails instead of taking a short stream for a complete one.
 *
 * Everything a reader allocates is bounded by what it has actually read, so a
 * corrupt size field cannot make it allocate more than the stream holds. */
#include "kd_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kd_cli.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_names.h"
#include "kd_stream_impl.h"

/* ---- encoding ---- */

static uint64_t raw_size(const kd_frame *f)
{
    uint64_t n = 0;
    for (int i = 0; i < f->nmeta; i++)
        n += 4 + strlen(f->meta[i].key) + strlen(f->meta[i].val);
    for (int i = 0; i < f->n; i++)
        n += 2 + strlen(f->t[i].name) + 4 + 8 * (uint64_t)f->t[i].rank + 8 + f->t[i].nbytes;
    return n;
}

/* name, dtype, rank, dims, nbytes of one tensor; returns the byte after. */
static uint8_t *put_tensor_header(uint8_t *p, const kd_tensor *t)
{
    size_t k = strlen(t->name);
    put16(p, (uint16_t)k);
    memcpy(p + 2, t->name, k);
    p += 2 + k;
    p[0] = (uint8_t)t->dtype;
    p[1] = (uint8_t)t->rank;
    put16(p + 2, 0);
    p += 4;
    for (int d = 0; d < t->rank; d++, p += 8)
        put64(p, (uint64_t)t->dims[d]);
    put64(p, t->nbytes);
    return p + 8;
}

static void encode_raw(const kd_frame *f, uint8_t *p)
{
    for (int i = 0; i < f->nmeta; i++) {
        size_t k = strlen(f->meta[i].key), v = strlen(f->meta[i].val);
        put16(p, (uint16_t)k);
        memcpy(p + 2, f->meta[i].key, k);
        p += 2 + k;
        put16(p, (uint16_t)v);
        memcpy(p + 2, f->meta[i].val, v);
        p += 2 + v;
    }
    for (int i = 0; i < f->n; i++) {
        p = put_tensor_header(p, &f->t[i]);
        if (f->t[i].nbytes)
            memcpy(p, f->t[i].data, f->t[i].nbytes);
        p += f->t[i].nbytes;
    }
}

/* Encodes into *buf; with deflate the raw payload is staged in *tmp. */
static int encode(const kd_frame *f, int flags, uint8_t **buf, size_t *len, size_t *cap,
                  uint8_t **tmp, size_t *tmpcap)
{
    uint64_t raw = raw_size(f), stored = raw;
    if (f->n > MAX_TENSORS || raw > KD_STREAM_MAX_FRAME) {
        kd_err_set("frame too large (%d tensors, %llu bytes)", f->n, (unsigned long long)raw);
        return -1;
    }
    if (flags & KD_W_DEFLATE) {
        if (grow(tmp, tmpcap, raw ? raw : 1))
            goto oom;
        encode_raw(f, *tmp);
        uLongf bound = compressBound((uLong)raw);
        if (grow(buf, cap, HDR + bound))
            goto oom;
        if (compress2(*buf + HDR, &bound, *tmp, (uLong)raw, 1) != Z_OK) {
            kd_err_set("deflate failed");
            return -1;
        }
        stored = bound;
    } else {
        if (grow(buf, cap, HDR + raw))
            goto oom;
        encode_raw(f, *buf + HDR);
    }
    uint8_t *h = *buf;
    memcpy(h, MAGIC, 4);
    put16(h + 4, KD_STREAM_VERSION);
    put16(h + 6, (flags & KD_W_DEFLATE) ? 1 : 0);
    put32(h + 8, (uint32_t)f->n);
    put32(h + 12, (uint32_t)f->nmeta);
    put64(h + 16, stored);
    put64(h + 24, raw);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = crc_update(crc, h, 32);
    crc = crc_update(crc, h + HDR, stored);
    put32(h + 32, crc);
    put32(h + 36, 0);
    *len = HDR + stored;
    return 0;
oom:
    kd_err_set("out of memory encoding a frame of %llu bytes", (unsigned long long)raw);
    return -1;
}

int kd_frame_encode(const kd_frame *f, int flags, uint8_t **buf, size_t *len, size_t *cap)
{
    uint8_t *tmp = NULL;
    size_t tmpcap = 0;
    int r = encode(f, flags, buf, len, cap, &tmp, &tmpcap);
    free(tmp);
    return r;
}

/* ---- writer ---- */

/* A write failed with EPIPE: the reader of the stream has gone. */
static int reader_gone;

static int write_failed(const kd_writer *w);

struct kd_writer {
    kd_file out;
    int flags;
    uint64_t frames;
    uint8_t *buf, *tmp;
    size_t cap, tmpcap;
};

kd_writer *kd_writer_open(const char *path, int flags)
{
    kd_writer *w = calloc(1, sizeof *w);
    if (!w) {
        kd_err_set("%s: out of memory", path);
        return NULL;
    }
    if (kd_file_open(&w->out, path)) {
        free(w);
        return NULL;
    }
    w->flags = flags;
    return w;
}

/* Uncompressed frames are written piecewise: the small per-tensor headers
 * go through a buffer, the tensor data straight from the frame, so the bulk
 * is never copied (the CRC is one pass over it, the write another). */
static int put_plain(kd_writer *w, const kd_frame *f)
{
    uint64_t raw = raw_size(f), meta = 0;
    if (f->n > MAX_TENSORS || raw > KD_STREAM_MAX_FRAME) {
        kd_err_set("%s: frame too large (%d tensors, %llu bytes)", w->out.path, f->n, (unsigned long long)raw);
        return -1;
    }
    for (int i = 0; i < f->nmeta; i++)
        meta += 4 + strlen(f->meta[i].key) + strlen(f->meta[i].val);
    /* small part: header, metadata, and each tensor's header back to back */
    uint64_t small = HDR + meta;
    for (int i = 0; i < f->n; i++)
        small += 2 + strlen(f->t[i].name) + 4 + 8 * (uint64_t)f->t[i].rank + 8;
    if (grow(&w->buf, &w->cap, small)) {
        kd_err_set("%s: out of memory", w->out.path);
        return -1;
    }
    kd_frame hdrs = *f; /* same metadata, tensors encoded without their data */
    hdrs.n = 0;
    encode_raw(&hdrs, w->buf + HDR);
    uint8_t *p = w->buf + HDR + meta;
    size_t th[MAX_TENSORS + 1];
    th[0] = HDR + meta;
    for (int i = 0; i < f->n; i++) {
        p = put_tensor_header(p, &f->t[i]);
        th[i + 1] = (size_t)(p - w->buf);
    }
    uint8_t *h = w->buf;
    memcpy(h, MAGIC, 4);
    put16(h + 4, KD_STREAM_VERSION);
    put16(h + 6, 0);
    put32(h + 8, (uint32_t)f->n);
    put32(h + 12, (uint32_t)f->nmeta);
    put64(h + 16, raw);
    put64(h + 24, raw);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = crc_update(crc, h, 32);
    crc = crc_update(crc, h + HDR, meta);
    for (int i = 0; i < f->n; i++) {
        crc = crc_update(crc, w->buf + th[i], th[i + 1] - th[i]);
        crc = crc_update(crc, f->t[i].data, f->t[i].nbytes);
    }
    put32(h + 32, crc);
    put32(h + 36, 0);
    int ok = fwrite(w->buf, 1, th[0], w->out.f) == th[0];
    for (int i = 0; ok && i < f->n; i++)
        ok = fwrite(w->buf + th[i], 1, th[i + 1] - th[i], w->out.f) == th[i + 1] - th[i] &&
             (!f->t[i].nbytes || fwrite(f->t[i].data, 1, f->t[i].nbytes, w->out.f) == f->t[i].nbytes);
    if (!ok) {
        return write_failed(w);
    }
    return 0;
}

static int put_deflated(kd_writer *w, const kd_frame *f)
{
    size_t len;
    if (encode(f, w->flags, &w->buf, &len, &w->cap, &w->tmp, &w->tmpcap)) {
        kd_err_prefix("%s", w->out.path);
        return -1;
    }
    if (fwrite(w->buf, 1, len, w->out.f) != len) {
        return write_failed(w);
    }
    return 0;
}

int kd_writer_put(kd_writer *w, const kd_frame *f)
{
    if ((w->flags & KD_W_DEFLATE) ? put_deflated(w, f) : put_plain(w, f))
        return -1;
    /* The frame is the unit of work downstream: a tail left in stdio's
     * buffer would reach the reader only with the next frame, after this
     * stage computed it, and the two ends of a pipe would take turns
     * instead of running side by side (augment | teacher-extract |
     * distill-step at one thread each used one core in all). */
    if (fflush(w->out.f))
        return write_failed(w);
    w->frames++;
    return 0;
}

size_t kd_stream_end_encode(uint64_t frames, uint8_t *buf)
{
    char n[24];
    size_t k = strlen(KD_META_FRAMES), v = (size_t)snprintf(n, sizeof n, "%llu", (unsigned long long)frames);
    uint8_t *h = buf, *p = buf + HDR;
    put16(p, (uint16_t)k);
    memcpy(p + 2, KD_META_FRAMES, k);
    put16(p + 2 + k, (uint16_t)v);
    memcpy(p + 4 + k, n, v);
    uint64_t raw = 4 + k + v;
    memcpy(h, MAGIC, 4);
    put16(h + 4, KD_STREAM_VERSION);
    put16(h + 6, F_END);
    put32(h + 8, 0);
    put32(h + 12, 1);
    put64(h + 16, raw);
    put64(h + 24, raw);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = crc_update(crc, h, 32);
    crc = crc_update(crc, p, raw);
    put32(h + 32, crc);
    put32(h + 36, 0);
    return HDR + (size_t)raw;
}

static int write_failed(const kd_writer *w)
{
    int e = errno;
    if (e == EPIPE)
        reader_gone = 1;
    if (w->out.f == stdout)
        kd_cli_stdout_failed(e);
    kd_err_set("%s: write error: %s", w->out.path, strerror(e));
    return -1;
}

static void writer_free(kd_writer *w)
{
    free(w->buf);
    free(w->tmp);
    free(w);
}

int kd_writer_close(kd_writer *w)
{
    uint8_t end[KD_STREAM_END_MAX];
    size_t n = kd_stream_end_encode(w->frames, end);
    if (fwrite(end, 1, n, w->out.f) != n) {
        write_failed(w);
        kd_file_abort(&w->out);
        writer_free(w);
        return -1;
    }
    int is_stdout = w->out.f == stdout;
    int r = kd_file_commit(&w->out);
    if (r && errno == EPIPE)
        reader_gone = 1;
    if (r && is_stdout)
        kd_cli_stdout_failed(errno);
    writer_free(w);
    return r;
}

void kd_writer_abort(kd_writer *w)
{
    if (!w)
        return;
    /* No end marker: on a pipe the consumer sees the frames written so far
     * and then EOF without the marker, and fails; a file is removed. */
    kd_file_abort(&w->out);
    writer_free(w);
}

void kd_writer_fail(kd_writer *w)
{
    kd_writer_abort(w);
    if (reader_gone)
        exit(KD_EXIT_FAIL);
    kd_die_err();
}
