#include "kd_tensor.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"

size_t kd_dtype_size(kd_dtype t)
{
    switch (t) {
    case KD_U8: return 1;
    case KD_I32: return 4;
    case KD_I64: return 8;
    case KD_F32: return 4;
    }
    return 0;
}

const char *kd_dtype_name(kd_dtype t)
{
    switch (t) {
    case KD_U8: return "u8";
    case KD_I32: return "i32";
    case KD_I64: return "i64";
    case KD_F32: return "f32";
    }
    return "?";
}

int kd_dtype_parse(const char *s)
{
    static const struct { const char *n; kd_dtype t; } tab[] = {
        {"u8", KD_U8}, {"i32", KD_I32}, {"i64", KD_I64}, {"f32", KD_F32}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].n))
            return (int)tab[i].t;
    return -1;
}

int64_t kd_tensor_numel(const kd_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

int kd_utf8_ok(const char *str, size_t n, int printable)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c == 0 || (printable && (c < 0x20 || c == 0x7f)))
                return 0;
            i++;
            continue;
        }
        size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!len || i + len > n)
            return 0;
        unsigned cp = c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += len;
    }
    return 1;
}

int64_t kd_first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return (int64_t)i;
    return -1;
}

void kd_frame_init(kd_frame *f)
{
    memset(f, 0, sizeof *f);
}

void kd_frame_free(kd_frame *f)
{
    for (int i = 0; i < f->cap; i++)
        free(f->t[i].data);
    free(f->t);
    kd_frame_init(f);
}

void kd_frame_clear(kd_frame *f)
{
    f->n = 0;
    f->nmeta = 0;
}

kd_tensor *kd_frame_get(kd_frame *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    return NULL;
}

const kd_tensor *kd_frame_cget(const kd_frame *f, const char *name)
{
    return kd_frame_get((kd_frame *)f, name);
}

kd_tensor *kd_frame_add(kd_frame *f, const char *name, kd_dtype dt, int rank, const int64_t *dims)
{
    size_t len = strlen(name);
    if (len == 0 || len >= KD_NAME_MAX) {
        kd_err_set("tensor name '%.70s' must have 1 to %d bytes", name, KD_NAME_MAX - 1);
        return NULL;
    }
    if (!kd_dtype_size(dt)) {
        kd_err_set("tensor '%s': unknown dtype %d", name, (int)dt);
        return NULL;
    }
    if (rank < 0 || rank > KD_MAX_RANK) {
        kd_err_set("tensor '%s': rank %d outside [0, %d]", name, rank, KD_MAX_RANK);
        return NULL;
    }
    /* Overflow-safe size: every product stays below 2^62. */
    uint64_t n = kd_dtype_size(dt);
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0 || (dims[i] > 0 && n > ((uint64_t)1 << 62) / (uint64_t)dims[i])) {
            kd_err_set("tensor '%s': dimension %d (%lld) is invalid or too large", name, i,
                       (long long)dims[i]);
            return NULL;
        }
        n *= (uint64_t)dims[i];
    }
    kd_tensor *t = kd_frame_get(f, name);
    if (!t) {
        if (f->n == f->cap) {
            int cap = f->cap ? 2 * f->cap : 8;
            kd_tensor *nt = realloc(f->t, (size_t)cap * sizeof *nt);
            if (!nt) {
                kd_err_set("tensor '%s': out of memory", name);
                return NULL;
            }
            memset(nt + f->cap, 0, (size_t)(cap - f->cap) * sizeof *nt);
            f->t = nt;
            f->cap = cap;
        }
        t = &f->t[f->n++];
        memcpy(t->name, name, len + 1);
    }
    if (n > t->cap) {
        void *d = realloc(t->data, n);
        if (!d) {
            kd_err_set("tensor '%s': out of memory for %llu bytes", name, (unsigned long long)n);
            /* keep the slot consistent: an empty tensor */
            t->rank = 0;
            t->nbytes = 0;
            return NULL;
        }
        t->data = d;
        t->cap = n;
    }
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->nbytes = n;
    return t;
}

kd_tensor *kd_frame_need(kd_frame *f, const char *name, kd_dtype dt, int rank)
{
    kd_tensor *t = kd_frame_get(f, name);
    if (!t) {
        kd_err_set("frame has no tensor '%s'", name);
        return NULL;
    }
    if (t->dtype != dt) {
        kd_err_set("tensor '%s' is %s, expected %s", name, kd_dtype_name(t->dtype), kd_dtype_name(dt));
        return NULL;
    }
    if (rank >= 0 && t->rank != rank) {
        kd_err_set("tensor '%s' has rank %d, expected %d", name, t->rank, rank);
        return NULL;
    }
    return t;
}

int kd_frame_remove(kd_frame *f, const char *name)
{
    kd_tensor *t = kd_frame_get(f, name);
    if (!t)
        return -1;
    /* Keep every slot's buffer owned by some slot: swap the removed one to the
     * end of the used range, preserving the order of the others. */
    kd_tensor removed = *t;
    int i = (int)(t - f->t);
    memmove(&f->t[i], &f->t[i + 1], (size_t)(f->n - i - 1) * sizeof *t);
    f->t[f->n - 1] = removed;
    f->n--;
    return 0;
}

int kd_frame_meta_set(kd_frame *f, const char *key, const char *fmt, ...)
{
    if (strlen(key) == 0 || strlen(key) >= KD_META_KEY) {
        kd_err_set("metadata key '%.40s' must have 1 to %d bytes", key, KD_META_KEY - 1);
        return -1;
    }
    kd_meta *m = NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[i].key, key))
            m = &f->meta[i];
    if (!m) {
        if (f->nmeta == KD_META_MAX) {
            kd_err_set("too many metadata entries (at most %d)", KD_META_MAX);
            return -1;
        }
        m = &f->meta[f->nmeta++];
        snprintf(m->key, sizeof m->key, "%s", key);
    }
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(m->val, sizeof m->val, fmt, ap);
    va_end(ap);
    if (r < 0 || r >= KD_META_VAL) {
        kd_err_set("metadata '%s': value longer than %d bytes", key, KD_META_VAL - 1);
        return -1;
    }
    return 0;
}

const char *kd_frame_meta_get(const kd_frame *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[i].key, key))
            return f->meta[i].val;
    return NULL;
}

int64_t kd_frame_meta_i64(const kd_frame *f, const char *key, int64_t def)
{
    const char *v = kd_frame_meta_get(f, key);
    if (!v)
        return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return def;
    return x;
}

int kd_frame_meta_count(const kd_frame *f, const char *key, int64_t min, int64_t def, int64_t *out)
{
    const char *v = kd_frame_meta_get(f, key);
    *out = def;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < min) {
        kd_err_set("metadata %s='%s' is not an integer >= %lld", key, v, (long long)min);
        return -1;
    }
    *out = x;
    return 0;
}

int kd_frame_copy(kd_frame *dst, const kd_frame *src)
{
    kd_frame_clear(dst);
    for (int i = 0; i < src->n; i++) {
        const kd_tensor *s = &src->t[i];
        kd_tensor *d = kd_frame_add(dst, s->name, s->dtype, s->rank, s->dims);
        if (!d)
            return -1;
        if (s->nbytes)
            memcpy(d->data, s->data, s->nbytes);
    }
    dst->nmeta = src->nmeta;
    memcpy(dst->meta, src->meta, sizeof src->meta);
    return 0;
}
