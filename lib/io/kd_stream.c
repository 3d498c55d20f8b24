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

#define HDR 40
static const unsigned char MAGIC[4] = {'K', 'D', 'T', '\n'};
#define MAX_TENSORS 4096
#define F_DEFLATE 1u
#define F_END 2u

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* CRC over possibly > 4 GiB in pieces zlib's uInt can take. */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, uint64_t n)
{
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

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

/* ---- reader ---- */

struct kd_reader {
    FILE *f;
    int own;
    char name[512];
    uint64_t off;   /* byte offset of the next frame */
    uint64_t frame; /* index of the next frame */
    int ended;      /* the end marker has been read */
    uint64_t bound; /* largest raw payload accepted (KDPIPE_MAX_FRAME_MB) */
    uint8_t *buf, *raw;
    size_t cap, rawcap;
};

kd_reader *kd_reader_fopen(FILE *f, const char *name)
{
    kd_reader *r = calloc(1, sizeof *r);
    if (!r) {
        kd_err_set("%s: out of memory", name);
        return NULL;
    }
    r->f = f;
    snprintf(r->name, sizeof r->name, "%s", name);
    const char *env = getenv(KD_STREAM_BOUND_ENV);
    long mb = KD_STREAM_BOUND_MB;
    if (env && *env) {
        char *end;
        mb = strtol(env, &end, 10);
        if (*end || mb < 1 || mb > 4096) {
            kd_err_set("%s: %s='%s' is not a number of MB in [1, 4096]", name, KD_STREAM_BOUND_ENV, env);
            free(r);
            return NULL;
        }
    }
    r->bound = (uint64_t)mb << 20;
    return r;
}

kd_reader *kd_reader_open(const char *path)
{
    if (!strcmp(path, "-"))
        return kd_reader_fopen(stdin, "<stdin>");
    FILE *f = fopen(path, "rb");
    if (!f) {
        kd_err_set("%s: %s", path, strerror(errno));
        return NULL;
    }
    kd_reader *r = kd_reader_fopen(f, path);
    if (!r) {
        fclose(f);
        return NULL;
    }
    r->own = 1;
    return r;
}

uint64_t kd_reader_offset(const kd_reader *r)
{
    return r->off;
}

void kd_reader_close(kd_reader *r)
{
    if (!r)
        return;
    if (r->own)
        fclose(r->f);
    free(r->buf);
    free(r->raw);
    free(r);
}

#define BAD(...)                                                                     \
    do {                                                                             \
        char msg_[512];                                                              \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                    \
        kd_err_set("%s: frame %llu at byte %llu: %s", r->name,                       \
                   (unsigned long long)r->frame, (unsigned long long)r->off, msg_);  \
        return -1;                                                                   \
    } while (0)

/* Parses a verified raw payload into f. */
static int parse(kd_reader *r, const uint8_t *p, uint64_t n, uint32_t nt, uint32_t nm, kd_frame *f)
{
    const uint8_t *end = p + n;
#define NEED(k, what)                                                           \
    if ((uint64_t)(end - p) < (uint64_t)(k))                                    \
        BAD("payload ends inside %s (corrupt frame)", what);
    kd_frame_clear(f);
    for (uint32_t i = 0; i < nm; i++) {
        NEED(2, "metadata");
        uint16_t k = get16(p);
        NEED(2 + (uint64_t)k + 2, "metadata");
        uint16_t v = get16(p + 2 + k);
        NEED(4 + (uint64_t)k + v, "metadata");
        if (k == 0 || k >= KD_META_KEY || v >= KD_META_VAL)
            BAD("metadata entry %u has a bad key or value length", i);
        if (!kd_utf8_ok((const char *)(p + 2), k, 1) || !kd_utf8_ok((const char *)(p + 4 + k), v, 0))
            BAD("metadata entry %u: the key or value is not UTF-8 without NUL (or the key has control characters)", i);
        char key[KD_META_KEY];
        memcpy(key, p + 2, k);
        key[k] = 0;
        if (kd_frame_meta_set(f, key, "%.*s", (int)v, (const char *)(p + 4 + k)))
            BAD("%s", kd_err_get());
        p += 4 + k + v;
    }
    for (uint32_t i = 0; i < nt; i++) {
        NEED(2, "a tensor header");
        uint16_t k = get16(p);
        if (k == 0 || k >= KD_NAME_MAX)
            BAD("tensor %u: name length %u outside [1, %d]", i, k, KD_NAME_MAX - 1);
        NEED(2 + (uint64_t)k + 4, "a tensor header");
        if (!kd_utf8_ok((const char *)(p + 2), k, 1))
            BAD("tensor %u: the name is not UTF-8 without NUL and control characters", i);
        char name[KD_NAME_MAX];
        memcpy(name, p + 2, k);
        name[k] = 0;
        p += 2 + k;
        int dt = p[0], rank = p[1];
        if (!kd_dtype_size((kd_dtype)dt))
            BAD("tensor '%s': unknown dtype %d", name, dt);
        if (rank > KD_MAX_RANK)
            BAD("tensor '%s': rank %d > %d", name, rank, KD_MAX_RANK);
        p += 4;
        NEED(8 * (uint64_t)rank + 8, "a tensor header");
        int64_t dims[KD_MAX_RANK];
        uint64_t numel = 1;
        for (int d = 0; d < rank; d++) {
            uint64_t x = get64(p + 8 * d);
            if (x > n || (x && numel > n / x))
                BAD("tensor '%s': dimension %d (%llu) exceeds the frame", name, d, (unsigned long long)x);
            numel *= x;
            dims[d] = (int64_t)x;
        }
        p += 8 * rank;
        uint64_t nb = get64(p);
        p += 8;
        if (nb != numel * kd_dtype_size((kd_dtype)dt))
            BAD("tensor '%s': %llu bytes do not match its shape", name, (unsigned long long)nb);
        NEED(nb, "tensor data");
        if (kd_frame_get(f, name))
            BAD("tensor '%s' appears twice", name);
        kd_tensor *t = kd_frame_add(f, name, (kd_dtype)dt, rank, dims);
        if (!t)
            BAD("%s", kd_err_get());
        if (nb)
            memcpy(t->data, p, nb);
        p += nb;
    }
    if (p != end)
        BAD("%llu unexplained bytes at the end of the payload", (unsigned long long)(end - p));
    return 0;
#undef NEED
}

/* Inflates r->buf[0..stored) into r->raw, growing it as output comes, so
 * that a header claiming a large raw size costs memory only if the data
 * really inflates to it.  0; -1 if it does not inflate to exactly raw
 * bytes; -2 out of memory. */
static int inflate_grow(kd_reader *r, uint64_t stored, uint64_t raw)
{
    z_stream z = {0};
    if (inflateInit(&z) != Z_OK)
        return -2;
    const uint8_t *in = r->buf;
    uint64_t in_left = stored, have = 0;
    int rc = Z_OK, bad = 0;
    while (rc != Z_STREAM_END && !bad) {
        uint64_t want = raw - have > (16u << 20) ? (16u << 20) : raw - have;
        if (grow(&r->raw, &r->rawcap, have + want + 1)) { /* +1: room to see output beyond raw */
            bad = -2;
            break;
        }
        if (!z.avail_in) {
            z.next_in = (Bytef *)in;
            z.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            in += z.avail_in;
            in_left -= z.avail_in;
        }
        z.next_out = r->raw + have;
        z.avail_out = (uInt)(want + 1);
        rc = inflate(&z, Z_NO_FLUSH);
        have = (uint64_t)(z.next_out - r->raw);
        if ((rc != Z_OK && rc != Z_STREAM_END) || have > raw || (rc == Z_OK && !z.avail_in && !in_left && z.avail_out))
            bad = -1;
    }
    inflateEnd(&z);
    return bad ? bad : have == raw && !z.avail_in && !in_left ? 0 : -1;
}

/* The end marker's payload (already CRC-checked): its frame count must be
 * the frames read, and nothing may follow it. */
static int end_marker(kd_reader *r, const uint8_t *p, uint64_t n, uint32_t nt, uint32_t nm)
{
    kd_frame m;
    kd_frame_init(&m);
    int bad = nt != 0 || nm != 1 || parse(r, p, n, 0, nm, &m);
    const char *v = bad ? NULL : kd_frame_meta_get(&m, KD_META_FRAMES);
    char want[24];
    snprintf(want, sizeof want, "%llu", (unsigned long long)r->frame);
    bad = bad || !v || strcmp(v, want);
    kd_frame_free(&m);
    if (bad)
        BAD("a malformed end marker (it must hold only %s=%llu, the count of frames before it)", KD_META_FRAMES,
            (unsigned long long)r->frame);
    if (fgetc(r->f) != EOF)
        BAD("data after the end marker (streams concatenated?)");
    r->ended = 1;
    return 0;
}

int kd_reader_next(kd_reader *r, kd_frame *f)
{
    if (r->ended)
        return 0;
    uint8_t h[HDR];
    size_t got = fread(h, 1, HDR, r->f);
    if (got == 0 && feof(r->f)) {
        kd_err_set("%s: the stream ended without its end marker (the writer died?) after %llu frame%s", r->name,
                   (unsigned long long)r->frame, r->frame == 1 ? "" : "s");
        return -1;
    }
    if (got < HDR) {
        if (ferror(r->f))
            BAD("read error: %s", strerror(errno));
        BAD("truncated frame header (%zu of %d bytes)", got, HDR);
    }
    if (memcmp(h, MAGIC, 4))
        BAD("bad magic (not a kdpipe stream, or corrupt)");
    uint16_t ver = get16(h + 4), flags = get16(h + 6);
    if (ver != KD_STREAM_VERSION)
        BAD("stream version %u is not supported (this kdpipe reads %d)", ver, KD_STREAM_VERSION);
    if ((flags & ~(F_DEFLATE | F_END)) || flags == (F_DEFLATE | F_END))
        BAD("unknown flags 0x%x", flags);
    if (get32(h + 36))
        BAD("reserved header bytes are not zero (corrupt frame)");
    uint32_t nt = get32(h + 8), nm = get32(h + 12);
    uint64_t stored = get64(h + 16), raw = get64(h + 24);
    if (nt > MAX_TENSORS || nm > KD_META_MAX)
        BAD("implausible counts (%u tensors, %u metadata)", nt, nm);
    if (raw > KD_STREAM_MAX_FRAME)
        BAD("frame of %llu bytes exceeds the limit", (unsigned long long)raw);
    /* checked before anything is allocated: a reader holds a frame twice
     * (the payload, then its tensors), so this bounds its memory */
    if (raw > r->bound)
        BAD("a frame of %llu bytes exceeds the bound of %llu MB per frame (%s raises it)",
            (unsigned long long)raw, (unsigned long long)(r->bound >> 20), KD_STREAM_BOUND_ENV);
    if (!(flags & 1) && stored != raw)
        BAD("stored and raw sizes differ in an uncompressed frame");
    if ((flags & 1) && stored > compressBound((uLong)raw) + 64)
        BAD("compressed size %llu implausible for %llu bytes", (unsigned long long)stored,
            (unsigned long long)raw);
    /* Read the payload in bounded pieces: allocation follows the data. */
    uint64_t have = 0;
    while (have < stored) {
        uint64_t want = stored - have;
        if (want > (16u << 20))
            want = 16u << 20;
        if (grow(&r->buf, &r->cap, have + want))
            BAD("out of memory");
        size_t k = fread(r->buf + have, 1, want, r->f);
        have += k;
        if (k < want) {
            if (ferror(r->f))
                BAD("read error: %s", strerror(errno));
            BAD("truncated payload (%llu of %llu bytes; stream ends at byte %llu)",
                (unsigned long long)have, (unsigned long long)stored,
                (unsigned long long)(r->off + HDR + have));
        }
    }
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = crc_update(crc, h, 32);
    crc = crc_update(crc, r->buf, stored);
    if (crc != get32(h + 32))
        BAD("CRC mismatch (corrupt frame)");
    if (flags & F_END)
        return end_marker(r, r->buf, stored, nt, nm);
    const uint8_t *payload = r->buf;
    if (flags & 1) {
        int rc = inflate_grow(r, stored, raw);
        if (rc == -2)
            BAD("out of memory");
        if (rc)
            BAD("deflated payload does not inflate to %llu bytes", (unsigned long long)raw);
        payload = r->raw;
    }
    if (parse(r, payload, raw, nt, nm, f))
        return -1;
    r->off += HDR + stored;
    r->frame++;
    return 1;
}
