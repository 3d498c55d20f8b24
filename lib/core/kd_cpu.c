#include "kd_cpu.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int kd_cpu_quota_parse(const char *s)
{
    char q[32];
    long long period;
    if (!s || sscanf(s, "%31s %lld", q, &period) != 2 || period <= 0 || !strcmp(q, "max"))
        return 0;
    char *end;
    long long quota = strtoll(q, &end, 10);
    if (*end || quota <= 0)
        return 0;
    long long n = quota / period + (quota % period != 0); /* quota + period may overflow */
    return n > 4096 ? 4096 : (int)n;
}

/* The first line of a file, "" if it cannot be read. */
static void first_line(const char *path, char *buf, size_t len)
{
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(buf, (int)len, f))
        buf[0] = 0;
    fclose(f);
}

static int cgroup_quota(void)
{
    char a[128], b[64];
    first_line("/sys/fs/cgroup/cpu.max", a, sizeof a);
    if (a[0])
        return kd_cpu_quota_parse(a);
    first_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", a, sizeof a);
    first_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us", b, sizeof b);
    if (!a[0] || !b[0])
        return 0;
    a[strcspn(a, "\n")] = 0;
    char both[200];
    snprintf(both, sizeof both, "%s %s", a, b);
    return kd_cpu_quota_parse(both);
}

int kd_cpu_usable(void)
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    int q = cgroup_quota();
    return q > 0 && q < n ? q : n;
}

int kd_cpu_available(void)
{
    int n = kd_cpu_usable();
    const char *omp = getenv("OMP_NUM_THREADS");
    if (omp && *omp) {
        char *end;
        long v = strtol(omp, &end, 10); /* "4,2" (nested levels): the first */
        if (v > 0 && (*end == 0 || *end == ',') && v < n)
            n = (int)v;
    }
    return n;
}
