/* kd_arena — the interval placer of the model planner in a file of its own:
 * it is the one piece of planning that can be checked without a model (no
 * two intervals alive together overlap in memory), see kd_arena.h. */
#include <stdlib.h>

#include "kd_arena.h"

static int cmp_size(const void *a, const void *b)
{
    const kd_arena_ivl *x = *(kd_arena_ivl *const *)a, *y = *(kd_arena_ivl *const *)b;
    return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}
static int cmp_off(const void *a, const void *b)
{
    const kd_arena_ivl *x = *(kd_arena_ivl *const *)a, *y = *(kd_arena_ivl *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

size_t kd_arena_place(kd_arena_ivl *it, int n)
{
    kd_arena_ivl **ord = malloc((size_t)(n ? n : 1) * sizeof *ord), **ov = malloc((size_t)(n ? n : 1) * sizeof *ov);
    size_t total = 0;
    if (!ord || !ov) {
        free(ord);
        free(ov);
        return (size_t)-1;
    }
    for (int i = 0; i < n; i++)
        ord[i] = &it[i];
    qsort(ord, (size_t)n, sizeof *ord, cmp_size);
    for (int i = 0; i < n; i++) {
        kd_arena_ivl *a = ord[i];
        int no = 0;
        for (int j = 0; j < i; j++)
            if (ord[j]->s <= a->e && a->s <= ord[j]->e)
                ov[no++] = ord[j];
        qsort(ov, (size_t)no, sizeof *ov, cmp_off);
        size_t off = 0;
        for (int j = 0; j < no; j++) {
            if (ov[j]->off >= off + a->size)
                break;
            if (ov[j]->off + ov[j]->size > off)
                off = ov[j]->off + ov[j]->size;
        }
        a->off = off;
        if (off + a->size > total)
            total = off + a->size;
    }
    free(ord);
    free(ov);
    return total;
}
