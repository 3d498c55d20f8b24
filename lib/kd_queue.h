/* kd_queue — a FIFO of K normalised embeddings [K,E], the negatives of
 * MoCo (the student's keys) and SEED (the teacher's embeddings): it starts
 * as normalised Gaussian vectors from (seed, stream), takes a batch's rows
 * after the optimiser step, and is checkpointed as GROUP/queue f32 [K,E]
 * with attribute ptr (the next slot). */
#ifndef KD_QUEUE_H
#define KD_QUEUE_H

#include <stdint.h>

#include "kd_h5.h"

typedef struct {
    float *v; /* [K,E] */
    int K, E;
    long ptr;
} kd_queue;

/* -1 with kd_err when out of memory. */
int kd_queue_init(kd_queue *q, int K, int E, uint64_t seed, uint64_t stream);
void kd_queue_free(kd_queue *q);
/* The n rows [n,E] enter in order, overwriting the oldest. */
void kd_queue_push(kd_queue *q, const float *rows, int n);
int kd_queue_save(const kd_queue *q, kd_h5 *h, const char *group);
/* Refuses another shape or a pointer outside [0, K). */
int kd_queue_load(kd_queue *q, const kd_h5 *h, const char *group);

#endif
