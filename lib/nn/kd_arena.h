/* kd_arena — placement of live ranges in one arena (private to lib/nn).
 *
 * The model planner gives every activation (and every activation gradient)
 * an interval of time [s,e] during which it must hold its contents, and a
 * size; kd_arena_place() gives each an offset so that two intervals alive
 * at the same time never share memory, and returns the arena size.  It
 * knows nothing about models, so it is tested alone (tests/unit/test_arena.c). */
#ifndef KD_ARENA_H
#define KD_ARENA_H

#include <stddef.h>

typedef struct {
    size_t size, off; /* off: set by kd_arena_place */
    int s, e;         /* alive from step s to step e, both included */
} kd_arena_ivl;

/* Greedy, largest first: each interval goes at the lowest offset where it
 * fits between the already placed intervals that overlap it in time.
 * Returns the arena size, or (size_t)-1 when out of memory. */
size_t kd_arena_place(kd_arena_ivl *it, int n);

#endif
