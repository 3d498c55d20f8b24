/* kd_model_io — model files: architecture options as root attributes,
 * parameters and buffers as datasets under their PyTorch names.  In a file
 * of its own so that only users of model files compile against HDF5. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"
#include "kd_model_io.h"

int kd_model_save_h5(const kd_model *m, kd_h5 *h)
{
    const kd_arch_opts *o = &m->o;
    if (kd_h5_attr_set_str(h, NULL, "arch", o->arch) || kd_h5_attr_set_i64(h, NULL, "in_channels", o->in_channels) ||
        kd_h5_attr_set_i64(h, NULL, "num_classes", o->num_classes) ||
        kd_h5_attr_set_i64(h, NULL, "cifar_stem", o->cifar_stem) ||
        kd_h5_attr_set_i64(h, NULL, "head_hidden", o->head_hidden) ||
        kd_h5_attr_set_i64(h, NULL, "head_out", o->head_out) || kd_h5_attr_set_i64(h, NULL, "head_bn", o->head_bn) ||
        kd_h5_attr_set_f64(h, NULL, "width_mult", o->width_mult))
        return -1;
    for (int i = 0; i < m->npv; i++) {
        const kd_pview *v = &m->pv[i];
        if (kd_h5_write(h, v->name, KD_F32, v->rank, v->shape, m->params + v->off))
            return -1;
    }
    for (int i = 0; i < m->nbv; i++) {
        const kd_pview *v = &m->bv[i];
        const float *b = m->buffers + v->off;
        if (v->rank == 0) {
            int64_t t = (int64_t)llround(b[0]);
            if (kd_h5_write(h, v->name, KD_I64, 0, v->shape, &t))
                return -1;
        } else if (kd_h5_write(h, v->name, KD_F32, v->rank, v->shape, b)) {
            return -1;
        }
    }
    return 0;
}

int kd_model_save(const kd_model *m, const char *path)
{
    kd_h5 h;
    if (kd_h5_create(&h, path, "model"))
        return -1;
    if (kd_model_save_h5(m, &h)) {
        kd_h5_abort(&h);
        return -1;
    }
    return kd_h5_commit(&h);
}

static int read_opt_i64(const kd_h5 *h, const char *name, int *out, int required)
{
    int64_t v = 0;
    if (!kd_h5_attr_has(h, NULL, name)) {
        if (required) {
            kd_err_set("%s: not a model file: no '%s' attribute", h->path, name);
            return -1;
        }
        *out = 0;
        return 0;
    }
    if (kd_h5_attr_get_i64(h, NULL, name, &v))
        return -1;
    if (v < 0 || v > 1000000) {
        kd_err_set("%s: attribute %s = %lld out of range", h->path, name, (long long)v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

kd_model *kd_model_load_h5(const kd_h5 *h)
{
    char arch[64];
    kd_arch_opts o;
    memset(&o, 0, sizeof o);
    if (!kd_h5_attr_has(h, NULL, "arch")) {
        kd_err_set("%s: not a model file: no 'arch' attribute", h->path);
        return NULL;
    }
    if (kd_h5_attr_get_str(h, NULL, "arch", arch, sizeof arch))
        return NULL;
    o.arch = arch;
    double wm = 1;
    if (read_opt_i64(h, "in_channels", &o.in_channels, 1) || read_opt_i64(h, "num_classes", &o.num_classes, 0) ||
        read_opt_i64(h, "cifar_stem", &o.cifar_stem, 0) || read_opt_i64(h, "head_hidden", &o.head_hidden, 0) ||
        read_opt_i64(h, "head_out", &o.head_out, 0) || read_opt_i64(h, "head_bn", &o.head_bn, 0))
        return NULL;
    if (kd_h5_attr_has(h, NULL, "width_mult") && kd_h5_attr_get_f64(h, NULL, "width_mult", &wm))
        return NULL;
    o.width_mult = (float)wm;
    kd_model *m = kd_model_build_graph(&o);
    if (!m) {
        kd_err_prefix("%s", h->path);
        return NULL;
    }
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass ? m->nbv : m->npv;
        for (int i = 0; i < cnt; i++) {
            const kd_pview *v = pass ? &m->bv[i] : &m->pv[i];
            float *dst = (pass ? m->buffers : m->params) + v->off;
            if (!kd_h5_exists(h, v->name)) {
                if (pass && v->rank == 0) { /* older state dicts lack num_batches_tracked */
                    dst[0] = 0;
                    continue;
                }
                kd_err_set("%s: missing tensor '%s' (architecture %s)", h->path, v->name, m->arch);
                goto fail;
            }
            int64_t dims[KD_MAX_RANK];
            kd_dtype dt;
            int rank;
            if (kd_h5_info(h, v->name, &dt, &rank, dims))
                goto fail;
            int ok = rank == v->rank;
            for (int k = 0; ok && k < rank; k++)
                ok = dims[k] == v->shape[k];
            if (!ok && !(v->rank == 0 && rank == 1 && dims[0] == 1)) {
                char want[80] = "", got[80] = "";
                for (int k = 0; k < v->rank; k++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", k ? "," : "",
                             (long long)v->shape[k]);
                for (int k = 0; k < rank && k < 8; k++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? "," : "",
                             (long long)dims[k]);
                kd_err_set("%s: tensor '%s' has shape [%s], architecture %s needs [%s]", h->path, v->name, got,
                           m->arch, want);
                goto fail;
            }
            if (v->rank == 0) {
                int64_t t = 0;
                if (kd_h5_read(h, v->name, KD_I64, 0, 1, &t))
                    goto fail;
                dst[0] = (float)t;
            } else if (kd_h5_read(h, v->name, KD_F32, 0, v->shape[0], dst)) {
                goto fail;
            }
            /* a negative variance makes eval BN's 1/sqrt(var + eps) NaN */
            int is_var = pass && strstr(v->name, "running_var") != NULL;
            for (size_t k = 0; k < v->n; k++) {
                if (!isfinite(dst[k])) {
                    kd_err_set("%s: tensor '%s' holds non-finite values", h->path, v->name);
                    goto fail;
                }
                if (is_var && dst[k] < 0) {
                    kd_err_set("%s: %s[%zu] = %g is negative (a running variance)", h->path, v->name, k,
                               (double)dst[k]);
                    goto fail;
                }
            }
        }
    }
    return m;
fail:
    kd_model_free(m);
    return NULL;
}

kd_model *kd_model_load(const char *path)
{
    kd_h5 h;
    if (kd_h5_open(&h, path, NULL))
        return NULL;
    const char *kind = kd_h5_kind(&h);
    /* distill-step's checkpoints are model files too (kind "model") */
    if (strcmp(kind, "model")) {
        kd_err_set("%s: a %s file, not a model", path, kind[0] ? kind : "kind-less");
        kd_h5_close(&h);
        return NULL;
    }
    kd_model *m = kd_model_load_h5(&h);
    kd_h5_close(&h);
    return m;
}
