/* The deterministic test weights of the PyTorch model fixtures: the C side
 * of tests/gen/models.py's pattern() and test_weights(), shared by the
 * model and training tests so that both fill a model exactly as the
 * generator did. */
#ifndef KD_FIXTURE_WEIGHTS_H
#define KD_FIXTURE_WEIGHTS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kd_model.h"

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 0x811C9DC5u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x01000193u;
    return h;
}

/* u in [-0.5, 0.5): tests/gen/models.py's pattern(), bit for bit */
static double pat(uint32_t key, uint64_t j)
{
    uint32_t h = (uint32_t)j * 0x9E3779B1u + key;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return (double)h / 4294967296.0 - 0.5;
}

static int ends(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* tests/gen/models.py's test_weights() */
static void fill_view(const kd_pview *v, float *dst)
{
    uint32_t key = fnv1a(v->name);
    double fan_in = 1;
    for (int k = 1; k < v->rank; k++)
        fan_in *= (double)v->shape[k];
    double sc = sqrt(12.0 / fan_in);
    for (size_t j = 0; j < v->n; j++) {
        double u = pat(key, j), x;
        if (ends(v->name, "running_var"))
            x = 1.0 + u;
        else if (ends(v->name, "running_mean") || ends(v->name, "bias"))
            x = 0.2 * u;
        else if (v->rank == 1)
            x = 1.0 + 0.4 * u;
        else
            x = u * sc;
        dst[j] = (float)x;
    }
}

static void fill_model(kd_model *m)
{
    float *p = kd_model_params(m, NULL), *b = kd_model_buffers(m, NULL);
    for (int i = 0; i < kd_model_nparam_views(m); i++)
        fill_view(kd_model_param_view(m, i), p + kd_model_param_view(m, i)->off);
    for (int i = 0; i < kd_model_nbuffer_views(m); i++) {
        const kd_pview *v = kd_model_buffer_view(m, i);
        if (v->rank == 0)
            b[v->off] = 0;
        else
            fill_view(v, b + v->off);
    }
}

#endif
