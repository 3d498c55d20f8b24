/* kd_stream_read — the reader of the kdpipe tensor stream (layout in
 * kd_stream.c): frames checked, inflated and parsed, the end marker found.
 * Everything it allocates is bounded by what it has actually read. */
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
    /* Read the payload in bounded pieces: allocation follows the data.  An
     * empty payload still gets a buffer: the parser's pointers are never NULL. */
    if (grow(&r->buf, &r->cap, 1))
        BAD("out of memory");
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
