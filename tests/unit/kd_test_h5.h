/* kd_test_h5 — reading a fixture's datasets in the unit tests. */
#ifndef KD_TEST_H5_H
#define KD_TEST_H5_H

#include <stdio.h>

#include "kd_h5.h"

/* GRP/NAME, a dataset of exactly n elements, into buf as dt; -1
 * otherwise (a fixture of another shape fails the case, not the reader). */
static inline int rd_as(kd_h5 *h, const char *grp, const char *name, kd_dtype dt, long n, void *buf)
{
    char p[128];
    int64_t dims[KD_MAX_RANK];
    kd_dtype ft;
    int rank;
    snprintf(p, sizeof p, "%s/%s", grp, name);
    if (kd_h5_info(h, p, &ft, &rank, dims))
        return -1;
    long numel = 1;
    for (int i = 0; i < rank; i++)
        numel *= (long)dims[i];
    if (numel != n)
        return -1;
    return kd_h5_read(h, p, dt, 0, dims[0], buf);
}

/* The same as floats. */
static inline int rd(kd_h5 *h, const char *grp, const char *name, long n, float *buf)
{
    return rd_as(h, grp, name, KD_F32, n, buf);
}

#endif
