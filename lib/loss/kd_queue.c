#include "kd_queue.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_rng.h"

int kd_queue_init(kd_queue *q, int K, int E, uint64_t seed, uint64_t stream)
{
    q->K = K, q->E = E, q->ptr = 0;
    if (!(q->v = malloc(sizeof(float) * (size_t)K * (size_t)E))) {
        kd_err_set("out of memory for a queue of %d x %d", K, E);
        return -1;
    }
    kd_rng r = kd_rng_make(seed, stream, 0);
    for (size_t i = 0; i < (size_t)K * E; i++)
        q->v[i] = kd_rng_normal(&r);
    for (size_t i = 0; i < (size_t)K; i++) {
        float *row = q->v + i * E;
        double n2 = 0;
        for (int j = 0; j < E; j++)
            n2 += (double)row[j] * row[j];
        float inv = (float)(1 / sqrt(n2));
        for (int j = 0; j < E; j++)
            row[j] *= inv;
    }
    return 0;
}

void kd_queue_free(kd_queue *q)
{
    free(q->v);
    q->v = NULL;
}

void kd_queue_push(kd_queue *q, const float *rows, int n)
{
    for (int i = 0; i < n; i++) {
        memcpy(q->v + (size_t)q->ptr * q->E, rows + (size_t)i * q->E, sizeof(float) * q->E);
        q->ptr = (q->ptr + 1) % q->K;
    }
}

int kd_queue_save(const kd_queue *q, kd_h5 *h, const char *group)
{
    char name[256];
    snprintf(name, sizeof name, "%s/queue", group);
    if (kd_h5_write(h, name, KD_F32, 2, (int64_t[]){q->K, q->E}, q->v))
        return -1;
    return kd_h5_attr_set_i64(h, name, "ptr", q->ptr);
}

int kd_queue_load(kd_queue *q, const kd_h5 *h, const char *group)
{
    char name[256];
    int64_t ptr;
    snprintf(name, sizeof name, "%s/queue", group);
    if (kd_h5_expect(h, name, 2, (int64_t[]){q->K, q->E}, NULL) || kd_h5_read(h, name, KD_F32, 0, q->K, q->v) ||
        kd_h5_attr_get_i64(h, name, "ptr", &ptr))
        return -1;
    if (ptr < 0 || ptr >= q->K) {
        kd_err_set("%s: queue pointer %lld outside [0, %d)", name, (long long)ptr, q->K);
        return -1;
    }
    q->ptr = (long)ptr;
    return 0;
}
