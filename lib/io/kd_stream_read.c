/* kd_stream_read — the reader of the kdpipe tensor stream (layout in
 * kd_stream.c): frames checked, inflated and parsed, the end marker found.
 * Tensors are filled straight from the file (or the inflater), so a frame
 * is held once; a header can claim at most the per-frame bound. */
#include "kd_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kd_cli.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_limits.h"
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
    uint8_t *buf; /* a piece of the stored payload */
    size_t cap;
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
    long mb = kd_env_bound(KD_STREAM_BOUND_ENV, "MB", KD_STREAM_BOUND_MB, 4096);
    if (mb < 0) {
        kd_err_prefix("%s", name);
        free(r);
        return NULL;
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

/* The payload as a source of bytes, read from the file in bounded pieces
 * (and inflated) straight into the tensors, so a frame is held once and a
 * header claiming more than the stream holds costs nothing.  The CRC is
 * over the stored bytes as they are read; it is checked at the end, and on
 * any failure the rest is drained first so that corruption is reported as
 * corruption, not as whatever the parser tripped on. */
typedef struct {
    kd_reader *r;
    int deflated;
    const uint8_t *mem; /* the payload is in memory (the end marker) */
    z_stream z;
    int zend;        /* Z_STREAM_END seen */
    uint64_t stored; /* stored bytes of the payload */
    uint64_t got;    /* stored bytes read so far */
    uint64_t raw;    /* raw bytes of the payload */
    uint64_t left;   /* raw bytes not yet taken */
    uint32_t crc;
    int io;          /* 1 truncated, 2 read error */
} src;

#define PIECE ((uint64_t)1 << 20)

/* Reads up to n stored bytes into dst; the count read. */
static uint64_t src_read(src *s, uint8_t *dst, uint64_t n)
{
    if (n > s->stored - s->got)
        n = s->stored - s->got;
    uint64_t have = 0;
    if (s->mem) {
        memcpy(dst, s->mem + s->got, n);
        have = n;
    }
    while (have < n) {
        uint64_t want = n - have > (1u << 30) ? (1u << 30) : n - have;
        size_t k = fread(dst + have, 1, want, s->r->f);
        s->crc = crc_update(s->crc, dst + have, k);
        have += k;
        if (k < want) {
            s->io = ferror(s->r->f) ? 2 : 1;
            break;
        }
    }
    s->got += have;
    return have;
}

/* Takes n raw bytes into dst.  0; -1 the payload ends short or does not
 * inflate. */
static int src_take(src *s, void *dst, uint64_t n)
{
    if (n > s->left)
        return -1;
    if (!s->deflated) {
        if (src_read(s, dst, n) < n)
            return -1;
        s->left -= n;
        return 0;
    }
    kd_reader *r = s->r;
    uint8_t *out = dst;
    while (n) {
        if (s->zend)
            return -1;
        if (!s->z.avail_in) {
            uint64_t k = src_read(s, r->buf, PIECE);
            if (!k)
                return -1;
            s->z.next_in = r->buf;
            s->z.avail_in = (uInt)k;
        }
        uInt w = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->z.next_out = out;
        s->z.avail_out = w;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        uInt did = w - s->z.avail_out;
        out += did;
        n -= did;
        s->left -= did;
        if (rc == Z_STREAM_END)
            s->zend = 1;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
        else if (rc == Z_BUF_ERROR && s->z.avail_in)
            return -1;
    }
    return 0;
}

/* A deflated payload must end exactly after raw bytes, its input used up. */
static int src_deflate_done(src *s)
{
    while (!s->zend) {
        uint8_t extra;
        if (!s->z.avail_in) {
            uint64_t k = src_read(s, s->r->buf, PIECE);
            if (!k)
                return -1;
            s->z.next_in = s->r->buf;
            s->z.avail_in = (uInt)k;
        }
        s->z.next_out = &extra;
        s->z.avail_out = 1;
        int rc = inflate(&s->z, Z_NO_FLUSH);
        if (!s->z.avail_out || (rc != Z_OK && rc != Z_STREAM_END))
            return -1;
        if (rc == Z_STREAM_END)
            s->zend = 1;
    }
    return s->z.avail_in || s->got < s->stored ? -1 : 0;
}

/* Parses the payload from s into f. */
static int parse(kd_reader *r, src *s, uint32_t nt, uint32_t nm, kd_frame *f)
{
    uint8_t b[4 + KD_META_KEY + KD_META_VAL + KD_NAME_MAX + 8 * KD_MAX_RANK + 16];
#define TAKE(dst, k, what)                                                            \
    if ((uint64_t)(k) > s->left)                                                      \
        BAD("payload ends inside %s (corrupt frame)", what);                          \
    if (src_take(s, (dst), (k)))                                                      \
        BAD("deflated payload does not inflate to %llu bytes", (unsigned long long)s->raw);
    kd_frame_clear(f);
    for (uint32_t i = 0; i < nm; i++) {
        TAKE(b, 2, "metadata");
        uint16_t k = get16(b);
        if (k == 0 || k >= KD_META_KEY)
            BAD("metadata entry %u has a bad key or value length", i);
        TAKE(b + 2, (uint64_t)k + 2, "metadata");
        uint16_t v = get16(b + 2 + k);
        if (v >= KD_META_VAL)
            BAD("metadata entry %u has a bad key or value length", i);
        TAKE(b + 4 + k, v, "metadata");
        if (!kd_utf8_ok((const char *)(b + 2), k, 1) || !kd_utf8_ok((const char *)(b + 4 + k), v, 0))
            BAD("metadata entry %u: the key or value is not UTF-8 without NUL (or the key has control characters)", i);
        char key[KD_META_KEY];
        memcpy(key, b + 2, k);
        key[k] = 0;
        if (kd_frame_meta_set(f, key, "%.*s", (int)v, (const char *)(b + 4 + k)))
            BAD("%s", kd_err_get());
    }
    for (uint32_t i = 0; i < nt; i++) {
        TAKE(b, 2, "a tensor header");
        uint16_t k = get16(b);
        if (k == 0 || k >= KD_NAME_MAX)
            BAD("tensor %u: name length %u outside [1, %d]", i, k, KD_NAME_MAX - 1);
        TAKE(b, (uint64_t)k + 4, "a tensor header");
        if (!kd_utf8_ok((const char *)b, k, 1))
            BAD("tensor %u: the name is not UTF-8 without NUL and control characters", i);
        char name[KD_NAME_MAX];
        memcpy(name, b, k);
        name[k] = 0;
        int dt = b[k], rank = b[k + 1];
        if (!kd_dtype_size((kd_dtype)dt))
            BAD("tensor '%s': unknown dtype %d", name, dt);
        if (rank > KD_MAX_RANK)
            BAD("tensor '%s': rank %d > %d", name, rank, KD_MAX_RANK);
        TAKE(b, 8 * (uint64_t)rank + 8, "a tensor header");
        int64_t dims[KD_MAX_RANK];
        uint64_t numel = 1, n = s->raw;
        for (int d = 0; d < rank; d++) {
            uint64_t x = get64(b + 8 * d);
            if (x > n || (x && numel > n / x))
                BAD("tensor '%s': dimension %d (%llu) exceeds the frame", name, d, (unsigned long long)x);
            numel *= x;
            dims[d] = (int64_t)x;
        }
        uint64_t nb = get64(b + 8 * rank);
        if (nb != numel * kd_dtype_size((kd_dtype)dt))
            BAD("tensor '%s': %llu bytes do not match its shape", name, (unsigned long long)nb);
        if (nb > s->left)
            BAD("payload ends inside tensor data (corrupt frame)");
        if (kd_frame_get(f, name))
            BAD("tensor '%s' appears twice", name);
        kd_tensor *t = kd_frame_add(f, name, (kd_dtype)dt, rank, dims);
        if (!t)
            BAD("%s", kd_err_get());
        TAKE(t->data, nb, "tensor data");
    }
    if (s->deflated && (s->left ? s->zend : src_deflate_done(s)))
        BAD("deflated payload does not inflate to %llu bytes", (unsigned long long)s->raw);
    if (s->left)
        BAD("%llu unexplained bytes at the end of the payload", (unsigned long long)s->left);
    return 0;
#undef TAKE
}

/* The end marker's payload (already CRC-checked): its frame count must be
 * the frames read, and nothing may follow it. */
static int end_marker(kd_reader *r, const uint8_t *p, uint64_t n, uint32_t nt, uint32_t nm)
{
    kd_frame m;
    kd_frame_init(&m);
    src s = {.r = r, .mem = p, .stored = n, .raw = n, .left = n};
    int bad = nt != 0 || nm != 1 || parse(r, &s, 0, nm, &m);
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
    src s = {.r = r, .deflated = flags & F_DEFLATE, .stored = stored, .raw = raw, .left = raw};
    s.crc = crc_update((uint32_t)crc32(0L, Z_NULL, 0), h, 32);
    if (grow(&r->buf, &r->cap, (flags & F_END) ? stored + 1 : PIECE)) /* never NULL, even for 0 bytes */
        BAD("out of memory");
    if (flags & F_END) {
        if (src_read(&s, r->buf, stored) == stored && s.crc == get32(h + 32))
            return end_marker(r, r->buf, stored, nt, nm);
    } else {
        if (s.deflated && inflateInit(&s.z) != Z_OK)
            BAD("out of memory");
        int bad = parse(r, &s, nt, nm, f);
        if (s.deflated)
            inflateEnd(&s.z);
        if (!bad && s.got == stored && s.crc == get32(h + 32))
            goto done;
        /* drain what is left, so the CRC and a truncation speak first */
        while (!s.io && s.got < stored)
            src_read(&s, r->buf, PIECE);
        if (!s.io && s.crc == get32(h + 32))
            return -1; /* the parser's message stands */
        kd_frame_clear(f);
    }
    if (s.io == 2)
        BAD("read error: %s", strerror(errno));
    if (s.io)
        BAD("truncated payload (%llu of %llu bytes; stream ends at byte %llu)", (unsigned long long)s.got,
            (unsigned long long)stored, (unsigned long long)(r->off + HDR + s.got));
    BAD("CRC mismatch (corrupt frame)");
done:
    r->off += HDR + stored;
    r->frame++;
    return 1;
}
