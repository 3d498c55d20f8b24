/* kd_dist — data parallelism across processes (MPI) behind a small
 * interface.  Built with MPI when the Makefile finds mpicc (KD_HAVE_MPI),
 * else as one process: size 1, rank 0, every reduction the identity.
 *
 * A process joins a job only when a launcher started it (mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK): run by hand, an MPI build is
 * one process too and never initialises MPI.  Errors of the calls are
 * returned (MPI_ERRORS_RETURN) with kd_err "MPI: ..."; a process of a job
 * that exits without kd_dist_finalize (kd_die, a usage error) aborts the
 * whole job, so that no rank waits for it forever. */
#ifndef KD_DIST_H
#define KD_DIST_H

#include <stddef.h>
#include <stdint.h>

/* 0, or -1 with kd_err.  Idempotent. */
int kd_dist_init(int *argc, char ***argv);
int kd_dist_rank(void);
int kd_dist_size(void);
/* "MPI: Open MPI v4.1.4" (the library's first line), or "MPI: no". */
const char *kd_dist_describe(void);

/* In place: v[0..n) becomes its element-wise sum over the ranks.  The sum's
 * order is fixed for a given size, so runs repeat bit for bit. */
int kd_dist_sum_f32(float *v, size_t n);
int kd_dist_sum_f64(double *v, size_t n);
/* In place: v[0..n) becomes its element-wise mean over the ranks (the
 * gradient of the global batch's mean loss from each rank's own). */
int kd_dist_mean_f32(float *v, size_t n);
int kd_dist_mean_f64(double *v, size_t n);
/* recv[r*n .. (r+1)*n) = rank r's send[0..n): recv holds size*n. */
int kd_dist_allgather_f32(const float *send, size_t n, float *recv);
int kd_dist_allgather_i64(const int64_t *send, size_t n, int64_t *recv);
/* Ends every process of the job with code (no return). */
_Noreturn void kd_dist_abort(int code);
/* 0, or -1 with kd_err.  After it the process is alone again. */
int kd_dist_finalize(void);

#endif
