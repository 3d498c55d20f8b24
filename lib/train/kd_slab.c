#include "kd_slab.h"

#include <stdlib.h>
#include <string.h>

#include "kd_err.h"

int kd_slab_init(kd_slab *s, const kd_pview *views, int nv)
{
    memset(s, 0, sizeof *s);
    if (nv < 0 || nv > 4096) {
        kd_err_set("slab: %d views", nv);
        return -1;
    }
    s->v = calloc((size_t)(nv ? nv : 1), sizeof *s->v);
    if (!s->v) {
        kd_err_set("slab: out of memory");
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < nv; i++) {
        s->v[i] = views[i];
        if (views[i].rank < 1 || views[i].rank > 4) {
            kd_err_set("slab: '%s' has rank %d", views[i].name, views[i].rank);
            kd_slab_free(s);
            return -1;
        }
        size_t n = 1;
        for (int d = 0; d < views[i].rank; d++) {
            if (views[i].shape[d] < 1 || views[i].shape[d] > (1 << 28) || n > ((size_t)1 << 32) / (size_t)views[i].shape[d]) {
                kd_err_set("slab: '%s' has a bad shape", views[i].name);
                kd_slab_free(s);
                return -1;
            }
            n *= (size_t)views[i].shape[d];
        }
        s->v[i].off = off;
        s->v[i].n = n;
        off += n;
    }
    s->nv = nv;
    s->n = off;
    s->p = calloc(off ? off : 1, sizeof(float));
    s->g = calloc(off ? off : 1, sizeof(float));
    if (!s->p || !s->g) {
        kd_err_set("slab: out of memory for %zu parameters", off);
        kd_slab_free(s);
        return -1;
    }
    return 0;
}

void kd_slab_free(kd_slab *s)
{
    free(s->p), free(s->g), free(s->v);
    memset(s, 0, sizeof *s);
}

static const kd_pview *find(const kd_slab *s, const char *name)
{
    for (int i = 0; i < s->nv; i++)
        if (!strcmp(s->v[i].name, name))
            return &s->v[i];
    return NULL;
}

float *kd_slab_param(kd_slab *s, const char *name)
{
    const kd_pview *v = find(s, name);
    return v ? s->p + v->off : NULL;
}

float *kd_slab_grad(kd_slab *s, const char *name)
{
    const kd_pview *v = find(s, name);
    return v ? s->g + v->off : NULL;
}
