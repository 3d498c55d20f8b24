/* kd_h5_attr — attributes of kdpipe's HDF5 files: strings (variable
 * length, UTF-8), string lists, i64, f64 and f32 vectors on the root or on
 * any group or dataset.  Files and datasets are in kd_h5.c. */
#include "kd_h5.h"

#include <stdlib.h>
#include <string.h>

#include "kd_err.h"

static hid_t attr_obj(const kd_h5 *h, const char *obj)
{
    if (!obj || !*obj || !strcmp(obj, "/"))
        return H5Oopen(h->id, "/", H5P_DEFAULT);
    return H5Oopen(h->id, obj, H5P_DEFAULT);
}

/* Replace-or-create an attribute and write it. */
static int attr_write(kd_h5 *h, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                      hid_t space, const void *data)
{
    hid_t o = attr_obj(h, obj);
    if (o < 0) {
        kd_err_set("%s: no object '%s' for attribute '%s'", h->path, obj, name);
        return -1;
    }
    if (H5Aexists(o, name) > 0)
        H5Adelete(o, name);
    hid_t a = H5Acreate2(o, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, mtype, data) >= 0) ? 0 : -1;
    /* the closes may write the object header out: their failure is the write's */
    if (a >= 0 && H5Aclose(a) < 0)
        rc = -1;
    if (H5Oclose(o) < 0)
        rc = -1;
    if (rc)
        kd_err_set("%s: cannot write attribute '%s'", h->path, name);
    return rc;
}

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int kd_h5_attr_set_str(kd_h5 *h, const char *obj, const char *name, const char *val)
{
    hid_t t = vlen_str_type(), sp = H5Screate(H5S_SCALAR);
    int rc = attr_write(h, obj, name, t, t, sp, &val);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

int kd_h5_attr_set_strv(kd_h5 *h, const char *obj, const char *name, const char *const *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t t = vlen_str_type(), sp = H5Screate_simple(1, &d, NULL);
    int rc = attr_write(h, obj, name, t, t, sp, v);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

int kd_h5_attr_set_i64(kd_h5 *h, const char *obj, const char *name, int64_t val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = attr_write(h, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, sp, &val);
    H5Sclose(sp);
    return rc;
}

int kd_h5_attr_set_f64(kd_h5 *h, const char *obj, const char *name, double val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = attr_write(h, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sp, &val);
    H5Sclose(sp);
    return rc;
}

int kd_h5_attr_set_f32v(kd_h5 *h, const char *obj, const char *name, const float *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    int rc = attr_write(h, obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sp, v);
    H5Sclose(sp);
    return rc;
}

int kd_h5_attr_has(const kd_h5 *h, const char *obj, const char *name)
{
    hid_t o = attr_obj(h, obj);
    if (o < 0)
        return 0;
    int r = H5Aexists(o, name) > 0;
    H5Oclose(o);
    return r;
}

/* Opens attribute name on obj; sets kd_err when missing. */
static hid_t attr_open(const kd_h5 *h, const char *obj, const char *name, hid_t *o)
{
    *o = attr_obj(h, obj);
    if (*o < 0 || H5Aexists(*o, name) <= 0) {
        if (*o >= 0)
            H5Oclose(*o);
        *o = -1;
        kd_err_set("%s: missing attribute '%s'%s%s", h->path, name, obj ? " on " : "", obj ? obj : "");
        return -1;
    }
    hid_t a = H5Aopen(*o, name, H5P_DEFAULT);
    if (a < 0) {
        H5Oclose(*o);
        *o = -1;
        kd_err_set("%s: cannot open attribute '%s'", h->path, name);
    }
    return a;
}

static void attr_close(hid_t a, hid_t o)
{
    H5Aclose(a);
    H5Oclose(o);
}

int kd_h5_attr_get_str(const kd_h5 *h, const char *obj, const char *name, char *buf, size_t len)
{
    hid_t o, a = attr_open(h, obj, name, &o);
    if (a < 0)
        return -1;
    hid_t ty = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(ty) == H5T_STRING) {
        if (H5Tis_variable_str(ty) > 0) {
            hid_t mt = vlen_str_type();
            char *s = NULL;
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(buf, len, "%s", s);
                H5free_memory(s);
                rc = 0;
            }
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(ty);
            char *tmp = calloc(1, sz + 1);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, sz + 1);
            if (tmp && H5Aread(a, mt, tmp) >= 0) {
                snprintf(buf, len, "%s", tmp);
                rc = 0;
            }
            H5Tclose(mt);
            free(tmp);
        }
    }
    H5Tclose(ty);
    attr_close(a, o);
    if (rc)
        kd_err_set("%s: attribute '%s' is not a string", h->path, name);
    return rc;
}

static int attr_get_num(const kd_h5 *h, const char *obj, const char *name, hid_t mt, void *val)
{
    hid_t o, a = attr_open(h, obj, name, &o);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a), ty = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(ty);
    int rc = (H5Sget_simple_extent_npoints(sp) == 1 && (cls == H5T_INTEGER || cls == H5T_FLOAT) &&
              H5Aread(a, mt, val) >= 0) ? 0 : -1;
    H5Tclose(ty);
    H5Sclose(sp);
    attr_close(a, o);
    if (rc)
        kd_err_set("%s: attribute '%s' is not a number", h->path, name);
    return rc;
}

int kd_h5_attr_get_i64(const kd_h5 *h, const char *obj, const char *name, int64_t *val)
{
    return attr_get_num(h, obj, name, H5T_NATIVE_INT64, val);
}

int kd_h5_attr_get_f64(const kd_h5 *h, const char *obj, const char *name, double *val)
{
    return attr_get_num(h, obj, name, H5T_NATIVE_DOUBLE, val);
}

int kd_h5_attr_get_f32v(const kd_h5 *h, const char *obj, const char *name, float *v, int max)
{
    hid_t o, a = attr_open(h, obj, name, &o);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a), ty = H5Aget_type(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5T_class_t cls = H5Tget_class(ty);
    int rc = -1;
    if (n >= 0 && n <= max && (cls == H5T_INTEGER || cls == H5T_FLOAT) &&
        H5Aread(a, H5T_NATIVE_FLOAT, v) >= 0)
        rc = (int)n;
    H5Tclose(ty);
    H5Sclose(sp);
    attr_close(a, o);
    if (rc < 0)
        kd_err_set("%s: attribute '%s' is not a list of at most %d numbers", h->path, name, max);
    return rc;
}

int kd_h5_attr_get_strv(const kd_h5 *h, const char *obj, const char *name, char ***v)
{
    hid_t o, a = attr_open(h, obj, name, &o);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a), ty = H5Aget_type(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int rc = -1;
    char **out = NULL;
    if (n >= 0 && n < 1000000 && H5Tget_class(ty) == H5T_STRING) {
        out = calloc((size_t)n + 1, sizeof *out);
        if (out && H5Tis_variable_str(ty) > 0) {
            hid_t mt = vlen_str_type();
            char **raw = calloc((size_t)n + 1, sizeof *raw);
            if (raw && H5Aread(a, mt, raw) >= 0) {
                rc = (int)n;
                for (hssize_t i = 0; i < n; i++) {
                    out[i] = strdup(raw[i] ? raw[i] : "");
                    if (raw[i])
                        H5free_memory(raw[i]);
                    if (!out[i])
                        rc = -1;
                }
            }
            free(raw);
            H5Tclose(mt);
        } else if (out) {
            size_t sz = H5Tget_size(ty);
            char *tmp = calloc((size_t)n, sz + 1);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, sz + 1);
            if (tmp && H5Aread(a, mt, tmp) >= 0) {
                rc = (int)n;
                for (hssize_t i = 0; i < n; i++)
                    if (!(out[i] = strndup(tmp + (size_t)i * (sz + 1), sz)))
                        rc = -1;
            }
            H5Tclose(mt);
            free(tmp);
        }
    }
    H5Tclose(ty);
    H5Sclose(sp);
    attr_close(a, o);
    if (rc < 0) {
        if (out)
            kd_strv_free(out, (int)n);
        kd_err_set("%s: attribute '%s' is not a list of strings", h->path, name);
        return -1;
    }
    *v = out;
    return rc;
}

void kd_strv_free(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
