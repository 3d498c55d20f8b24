/* kd_loss — the registry (generated from kd_losses.def), generic option
 * parsing over a module's option table, and the helpers of the init
 * context and the batch. */
#include "kd_loss.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_names.h"

#define KD_LOSS(n) extern const kd_loss_module kd_loss_##n;
#include "kd_losses.def"
#undef KD_LOSS

const kd_loss_module *const kd_loss_modules[] = {
#define KD_LOSS(n) &kd_loss_##n,
#include "kd_losses.def"
#undef KD_LOSS
    NULL};

const kd_loss_module *kd_loss_find(const char *name)
{
    for (int i = 0; kd_loss_modules[i]; i++)
        if (!strcmp(kd_loss_modules[i]->name, name))
            return kd_loss_modules[i];
    return NULL;
}

const char *kd_loss_names(void)
{
    static char buf[512];
    if (!buf[0])
        for (int i = 0; kd_loss_modules[i]; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? " " : "", kd_loss_modules[i]->name);
    return buf;
}

const kd_loss_opt *kd_loss_opt_find(const kd_loss_module *mod, const char *name)
{
    for (const kd_loss_opt *o = mod->opts; o && o->name; o++)
        if (!strcmp(o->name, name))
            return o;
    return NULL;
}

static int opt_set(const kd_loss_module *mod, const kd_loss_opt *o, void *opts, const char *val)
{
    if (o->type == KD_LOPT_STR) {
        if (strlen(val) >= KD_LOPT_STR_MAX) {
            kd_err_set("loss %s: %s: '%.40s...' is too long (at most %d characters)", mod->name, o->name, val,
                       KD_LOPT_STR_MAX - 1);
            return -1;
        }
        snprintf((char *)opts + o->off, KD_LOPT_STR_MAX, "%s", val);
        return 0;
    }
    char *end;
    errno = 0;
    double v = o->type == KD_LOPT_U64 ? (double)strtoull(val, &end, 0) : strtod(val, &end);
    if (end == val || *end || errno || !isfinite(v) || (o->type == KD_LOPT_U64 && strchr(val, '-'))) {
        kd_err_set("loss %s: %s: '%s' is not a number", mod->name, o->name, val);
        return -1;
    }
    if (o->type == KD_LOPT_INT && v != floor(v)) {
        kd_err_set("loss %s: %s: '%s' is not an integer", mod->name, o->name, val);
        return -1;
    }
    if (v < o->min || v > o->max) {
        kd_err_set("loss %s: %s: %s is outside [%.10g, %.10g]", mod->name, o->name, val, o->min, o->max);
        return -1;
    }
    char *p = (char *)opts + o->off;
    switch (o->type) {
    case KD_LOPT_INT: *(int *)p = (int)v; break;
    case KD_LOPT_FLOAT: *(float *)p = (float)v; break;
    case KD_LOPT_U64: *(uint64_t *)p = strtoull(val, NULL, 0); break;
    case KD_LOPT_STR: break; /* above */
    }
    return 0;
}

int kd_loss_opts_defaults(const kd_loss_module *mod, void *opts)
{
    if (mod->opts_size)
        memset(opts, 0, mod->opts_size);
    for (const kd_loss_opt *o = mod->opts; o && o->name; o++)
        if (opt_set(mod, o, opts, o->def))
            return -1;
    return 0;
}

int kd_loss_opts_set(const kd_loss_module *mod, void *opts, const char *name, const char *val)
{
    const kd_loss_opt *o = kd_loss_opt_find(mod, name);
    if (!o) {
        char known[256] = "";
        for (const kd_loss_opt *q = mod->opts; q && q->name; q++)
            snprintf(known + strlen(known), sizeof known - strlen(known), " %s", q->name);
        kd_err_set("loss %s has no option '%s' (it has:%s)", mod->name, name, known[0] ? known : " none");
        return -1;
    }
    return opt_set(mod, o, opts, val);
}

void kd_loss_help(FILE *f)
{
    for (int i = 0; kd_loss_modules[i]; i++) {
        const kd_loss_module *m = kd_loss_modules[i];
        fprintf(f, "  %-18s %s\n", m->name, m->summary);
        fprintf(f, "  %-18s needs: %s\n", "", m->needs);
        for (const kd_loss_opt *o = m->opts; o && o->name; o++) {
            char flag[64];
            snprintf(flag, sizeof flag, "--%s %s", o->name,
                     o->type == KD_LOPT_STR ? "S" : o->type == KD_LOPT_FLOAT ? "X" : "N");
            if (o->type == KD_LOPT_STR && !o->def[0])
                fprintf(f, "    %-22s %s\n", flag, o->help);
            else
                fprintf(f, "    %-22s %s (default %s)\n", flag, o->help, o->def);
        }
    }
}

int kd_loss_need_tensor(kd_loss_init *c, const char *name, kd_dtype dt, int rank, const char *hint)
{
    for (int i = 0; i < c->nneeds; i++)
        if (!strcmp(c->needs[i].name, name))
            return 0;
    if (c->nneeds == KD_LOSS_MAX_NEEDS || strlen(name) >= KD_NAME_MAX) {
        kd_err_set("loss %s: too many tensors needed", c->instance);
        return -1;
    }
    kd_loss_need *n = &c->needs[c->nneeds++];
    snprintf(n->name, sizeof n->name, "%s", name);
    n->dtype = dt;
    n->rank = rank;
    snprintf(n->hint, sizeof n->hint, "%s", hint ? hint : "");
    return 0;
}

int kd_loss_want_view(kd_loss_init *c, int v)
{
    if (v < 0 || v > 7) {
        kd_err_set("loss %s: view %d (views 0..7)", c->instance, v);
        return -1;
    }
    c->views |= 1u << v;
    return 0;
}

int kd_loss_want_grad_stage(kd_loss_init *c, int s)
{
    int ns = kd_model_nstages(c->student);
    if (s < 1 || s > ns) {
        kd_err_set("loss %s: the model has stages 1..%d, not %d", c->instance, ns, s);
        return -1;
    }
    c->grad_stages |= 1u << s;
    return 0;
}

const float *kd_loss_view(const kd_loss_batch *b, int i)
{
    char nm[KD_NAME_MAX];
    const kd_tensor *t = kd_frame_cget(b->frame, kd_name(nm, sizeof nm, KD_NAME_VIEW, NULL, i));
    return t ? t->data : NULL;
}

const kd_tensor *kd_loss_tensor(const kd_loss_batch *b, const char *name) { return kd_frame_cget(b->frame, name); }
