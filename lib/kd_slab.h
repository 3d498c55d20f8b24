/* kd_slab — parameters outside a model (a loss's embedding heads or
 * aligners): one parameter slab and one gradient slab with named views, the
 * layout kd_model uses, so that the optimiser and checkpoints treat them
 * alike.  Views are laid out in the order given. */
#ifndef KD_SLAB_H
#define KD_SLAB_H

#include <stddef.h>

#include "kd_model.h"

typedef struct {
    float *p, *g;  /* [n] parameters, gradients (zeroed by the trainer each step) */
    size_t n;
    kd_pview *v;
    int nv;
} kd_slab;

/* Lays out nv views (name, rank, shape, no_decay; off and n are computed)
 * and allocates zeroed slabs.  -1 with kd_err on a bad shape or no memory. */
int kd_slab_init(kd_slab *s, const kd_pview *views, int nv);
void kd_slab_free(kd_slab *s);
/* The parameters of a view by name, NULL if none. */
float *kd_slab_param(kd_slab *s, const char *name);
float *kd_slab_grad(kd_slab *s, const char *name);

#endif
