#include "kd_idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kd_err.h"

/* Largest IDX accepted: 16 GiB of pixels; dims are checked before allocating. */
#define IDX_MAX ((int64_t)1 << 34)

static int read_full(gzFile g, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        unsigned k = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int r = gzread(g, p, k);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A failed read is either a short file or a corrupt gzip stream; say which. */
static void read_error(gzFile g, const char *path, const char *what)
{
    int e = Z_OK;
    const char *msg = gzerror(g, &e);
    if (e != Z_OK && e != Z_BUF_ERROR) {
        /* zlib prefixes its message with the path: keep only its own words */
        size_t lp = strlen(path);
        if (msg && !strncmp(msg, path, lp) && !strncmp(msg + lp, ": ", 2))
            msg += lp + 2;
        kd_err_set("%s: corrupt gzip data: %s", path, msg && *msg ? msg : "zlib error");
    }
    else
        kd_err_set("%s: short file: %s", path, what);
}

int kd_idx_read(kd_idx *x, const char *path, int64_t limit)
{
    memset(x, 0, sizeof *x);
    gzFile g = gzopen(path, "rb");
    if (!g) {
        kd_err_set("%s: %s", path, errno ? strerror(errno) : "cannot open");
        return -1;
    }
    gzbuffer(g, 1 << 20);
    uint8_t h[4], d[16];
    if (read_full(g, h, 4)) {
        read_error(g, path, "too short for an IDX header");
        goto fail;
    }
    if (h[0] || h[1] || h[3] < 1 || h[3] > 4) {
        kd_err_set("%s: bad IDX magic %02x%02x%02x%02x", path, h[0], h[1], h[2], h[3]);
        goto fail;
    }
    if (h[2] != 0x08) {
        kd_err_set("%s: IDX type 0x%02x is not unsigned bytes", path, h[2]);
        goto fail;
    }
    x->rank = h[3];
    if (read_full(g, d, 4 * (size_t)x->rank)) {
        read_error(g, path, "truncated IDX header");
        goto fail;
    }
    int64_t n = 1;
    for (int i = 0; i < x->rank; i++) {
        x->dims[i] = (int64_t)d[4 * i] << 24 | d[4 * i + 1] << 16 | d[4 * i + 2] << 8 | d[4 * i + 3];
        if (x->dims[i] < 1 || x->dims[i] > IDX_MAX) {
            kd_err_set("%s: bad IDX dimension %d (%lld)", path, i, (long long)x->dims[i]);
            goto fail;
        }
    }
    const int64_t full0 = x->dims[0];
    if (limit > 0 && limit < x->dims[0])
        x->dims[0] = limit;
    for (int i = 0; i < x->rank; i++) {
        if (n > IDX_MAX / x->dims[i]) {
            kd_err_set("%s: IDX data too large", path);
            goto fail;
        }
        n *= x->dims[i];
    }
    /* Grow the buffer as data arrives, so that a corrupt header announcing
     * gigabytes costs no more memory than the file really holds. */
    size_t have = 0, cap = 0;
    while (have < (size_t)n) {
        if (have == cap) {
            size_t nc = cap ? 2 * cap : (size_t)1 << 26;
            if (nc > (size_t)n)
                nc = (size_t)n;
            uint8_t *nd = realloc(x->data, nc);
            if (!nd) {
                kd_err_set("%s: out of memory for %zu bytes", path, nc);
                goto fail;
            }
            x->data = nd;
            cap = nc;
        }
        if (read_full(g, x->data + have, cap - have)) {
            char what[96];
            snprintf(what, sizeof what, "fewer than the %lld data bytes its header announces", (long long)n);
            read_error(g, path, what);
            goto fail;
        }
        have = cap;
    }
    /* Read to the end when the whole file was wanted: only then does zlib
     * check the gzip CRC, and trailing bytes mean a header that lies. */
    if (x->dims[0] == full0) {
        uint8_t extra;
        int r = gzread(g, &extra, 1);
        if (r < 0) {
            read_error(g, path, "");
            goto fail;
        }
        if (r > 0) {
            kd_err_set("%s: more data than the %lld bytes its header announces", path, (long long)n);
            goto fail;
        }
    }
    gzclose(g);
    return 0;
fail:
    gzclose(g);
    kd_idx_free(x);
    return -1;
}

void kd_idx_free(kd_idx *x)
{
    free(x->data);
    x->data = NULL;
}
