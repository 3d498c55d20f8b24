/* kd_cpu — how many CPUs this process may really use: the default thread
 * count of every program.
 *
 * The CPUs in its affinity mask (taskset, cpuset), capped by the cgroup CPU
 * quota (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, rounded up)
 * and by OMP_NUM_THREADS when that is a positive number.  More threads than
 * CPUs makes OpenMP's spinning workers steal each other's time (hundreds of
 * times slower), which is why the online core count is not the default. */
#ifndef KD_CPU_H
#define KD_CPU_H

/* At least 1. */
int kd_cpu_available(void);
/* The CPUs of the affinity mask and the quota alone, without OMP_NUM_THREADS:
 * the most threads that can run at once. */
int kd_cpu_usable(void);
/* CPUs a quota allows: "max 100000" -> 0 (no quota), "150000 100000" -> 2;
 * v1 form: quota_us and period_us as two numbers ("-1 100000" -> 0). */
int kd_cpu_quota_parse(const char *cpu_max);

#endif
