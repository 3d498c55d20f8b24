/* test_arena — the model planner's interval placer (lib/nn/kd_arena.c)
 * alone: hand cases whose optimal arena size is known, and random interval
 * sets (fixed seeds) where every placement must keep apart in memory any two
 * intervals that overlap in time, keep every block inside the returned
 * size, and return a size between the peak of live bytes (a lower bound for
 * any placement) and the sum of all sizes.
 *
 * Adding a case: a hand case is one line in hand_cases[] (sizes, start and
 * end times, and the size a correct placer must return); a new random
 * family is one more entry in families[] (count, time span, size range). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nn/kd_arena.h"
#include "kd_test.h"

#define MAXN 64

/* The placement's invariants; returns NULL or a description of the first
 * violation (written into why). */
static const char *violation(const kd_arena_ivl *it, int n, size_t total, char *why, size_t len)
{
    for (int i = 0; i < n; i++) {
        if (it[i].off + it[i].size > total) {
            snprintf(why, len, "block %d [%zu,+%zu) outside the arena of %zu", i, it[i].off, it[i].size, total);
            return why;
        }
        for (int j = 0; j < i; j++) {
            int in_time = it[i].s <= it[j].e && it[j].s <= it[i].e;
            int in_mem = it[i].off < it[j].off + it[j].size && it[j].off < it[i].off + it[i].size;
            if (in_time && in_mem && it[i].size && it[j].size) {
                snprintf(why, len, "blocks %d [%d,%d]@%zu+%zu and %d [%d,%d]@%zu+%zu share memory while both live", i,
                         it[i].s, it[i].e, it[i].off, it[i].size, j, it[j].s, it[j].e, it[j].off, it[j].size);
                return why;
            }
        }
    }
    return NULL;
}

/* Largest sum of sizes alive at one time: no placement can do better. */
static size_t peak_live(const kd_arena_ivl *it, int n)
{
    size_t best = 0;
    for (int i = 0; i < n; i++) { /* the peak is reached at some interval's start */
        size_t sum = 0;
        for (int j = 0; j < n; j++)
            if (it[j].s <= it[i].s && it[i].s <= it[j].e)
                sum += it[j].size;
        if (sum > best)
            best = sum;
    }
    return best;
}

static const struct {
    const char *name;
    int n;
    size_t size[6];
    int s[6], e[6];
    size_t optimal;
} hand_cases[] = {
    {"no intervals", 0, {0}, {0}, {0}, 0},
    {"one interval", 1, {10}, {0}, {3}, 10},
    {"disjoint in time: the largest", 3, {5, 7, 3}, {0, 1, 2}, {0, 1, 2}, 7},
    {"all alive together: the sum", 3, {5, 7, 3}, {0, 0, 0}, {2, 2, 2}, 15},
    {"touching ends overlap (closed intervals)", 2, {4, 4}, {0, 1}, {1, 2}, 8},
    {"chain of three: first and last share", 3, {4, 4, 4}, {0, 1, 2}, {1, 2, 3}, 8},
    {"two small ones beside one large", 3, {10, 3, 3}, {0, 0, 2}, {2, 0, 2}, 13},
    {"a small one above two large ones in turn", 3, {8, 8, 2}, {0, 1, 0}, {0, 1, 1}, 10},
    {"forward-arena shape: a residual kept across a block", 5, {16, 16, 16, 16, 16}, {0, 1, 2, 0, 3},
     {1, 2, 3, 3, 4}, 48},
};

static void test_hand(void)
{
    for (size_t c = 0; c < sizeof hand_cases / sizeof hand_cases[0]; c++) {
        kd_arena_ivl it[6];
        int n = hand_cases[c].n;
        for (int i = 0; i < n; i++)
            it[i] = (kd_arena_ivl){.size = hand_cases[c].size[i], .s = hand_cases[c].s[i], .e = hand_cases[c].e[i]};
        size_t total = kd_arena_place(it, n);
        char why[256];
        const char *bad = violation(it, n, total, why, sizeof why);
        KD_CHECK(total == hand_cases[c].optimal && !bad, "hand case '%s': arena %zu (optimal %zu)%s%s",
                 hand_cases[c].name, total, hand_cases[c].optimal, bad ? ": " : "", bad ? bad : "");
    }
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const struct {
    const char *name;
    int cases, maxn, span;  /* intervals per case 1..maxn, times 0..span-1 */
    size_t maxsize, quantum; /* sizes quantum..maxsize in steps of quantum */
} families[] = {
    {"short-lived, many ties", 200, 40, 30, 64, 16},
    {"long-lived, varied sizes", 200, 40, 12, 100000, 1},
    {"a few, sharing one time step", 200, 8, 2, 1000, 1},
    {"the planner's scale", 100, MAXN, 120, 1 << 20, 16},
};

static void test_random(void)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        uint64_t seed = 1000 + f;
        int failed = 0, worst_case = -1;
        char first[300] = "";
        double worst_ratio = 1;
        for (int c = 0; c < families[f].cases; c++) {
            kd_arena_ivl it[MAXN];
            int n = 1 + (int)(splitmix(&seed) % (uint64_t)families[f].maxn);
            size_t sum = 0;
            for (int i = 0; i < n; i++) {
                int a = (int)(splitmix(&seed) % (uint64_t)families[f].span);
                int b = (int)(splitmix(&seed) % (uint64_t)families[f].span);
                size_t q = families[f].quantum;
                it[i].size = q * (1 + splitmix(&seed) % (families[f].maxsize / q));
                it[i].s = a < b ? a : b;
                it[i].e = a < b ? b : a;
                it[i].off = (size_t)-7; /* must be overwritten */
                sum += it[i].size;
            }
            size_t total = kd_arena_place(it, n), lo = peak_live(it, n);
            char why[256];
            const char *bad = total == (size_t)-1 ? "out of memory" : violation(it, n, total, why, sizeof why);
            if (!bad && (total < lo || total > sum)) {
                snprintf(why, sizeof why, "arena %zu outside [peak live %zu, sum %zu]", total, lo, sum);
                bad = why;
            }
            if (bad && !failed++)
                snprintf(first, sizeof first, " (first: case %d, n=%d: %s)", c, n, bad);
            if (!bad && (double)total / (double)lo > worst_ratio)
                worst_ratio = (double)total / (double)lo, worst_case = c;
        }
        KD_CHECK(!failed, "random '%s': %d cases, %d with overlaps or blocks outside%s; worst arena/peak-live %.3f (case %d)",
                 families[f].name, families[f].cases, failed, first, worst_ratio, worst_case);
    }
}

/* The placer must not depend on the input order beyond ties: the same set,
 * reversed, fits in an arena no larger than the sum and stays valid. */
static void test_order(void)
{
    uint64_t seed = 77;
    kd_arena_ivl a[MAXN], b[MAXN];
    int n = MAXN;
    for (int i = 0; i < n; i++) {
        int s = (int)(splitmix(&seed) % 50), len = (int)(splitmix(&seed) % 10);
        a[i] = (kd_arena_ivl){.size = 16 * (1 + (size_t)i * 7919 % 1000), .s = s, .e = s + len};
        b[n - 1 - i] = a[i];
    }
    size_t ta = kd_arena_place(a, n), tb = kd_arena_place(b, n);
    char w1[256], w2[256];
    const char *ba = violation(a, n, ta, w1, sizeof w1), *bb = violation(b, n, tb, w2, sizeof w2);
    KD_CHECK(!ba && !bb && ta == tb, "distinct sizes: the input order does not change the arena (%zu, reversed %zu)%s%s",
             ta, tb, ba ? ba : "", bb ? bb : "");
}

int main(void)
{
    test_hand();
    test_random();
    test_order();
    return KD_TEST_DONE();
}
