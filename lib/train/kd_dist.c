/* kd_dist — the MPI calls of data-parallel training (contract in
 * kd_dist.h); without KD_HAVE_MPI, one process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dist.h"
#include "kd_err.h"

#ifdef KD_HAVE_MPI
#include <mpi.h>

static int joined, rank_, size_ = 1, done;

/* kd_die / exit without finalize: the others would wait in a collective */
static void abort_at_exit(void)
{
    if (joined && !done)
        MPI_Abort(MPI_COMM_WORLD, 1);
}

static int fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", rc);
    kd_err_set("MPI: %s: %s", what, msg);
    return -1;
}

int kd_dist_init(int *argc, char ***argv)
{
    if (joined || !(getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")))
        return 0;
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS)
        return fail(rc, "init");
    joined = 1;
    atexit(abort_at_exit);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &rank_)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(MPI_COMM_WORLD, &size_)) != MPI_SUCCESS)
        return fail(rc, "rank");
    return 0;
}

int kd_dist_rank(void) { return rank_; }
int kd_dist_size(void) { return size_; }

const char *kd_dist_describe(void)
{
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING + 8];
    char v[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    if (MPI_Get_library_version(v, &len) != MPI_SUCCESS)
        return "MPI: yes";
    v[strcspn(v, ",\n")] = 0; /* "Open MPI v4.1.4, package: ..." */
    snprintf(buf, sizeof buf, "MPI: %s", v);
    return buf;
}

/* MPI counts are int: large buffers go in chunks */
#define CHUNK ((size_t)1 << 30)

static int sum(void *v, size_t n, MPI_Datatype t, size_t esz)
{
    for (size_t o = 0; joined && size_ > 1 && o < n; o += CHUNK) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)v + o * esz, (int)(n - o < CHUNK ? n - o : CHUNK), t, MPI_SUM,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return fail(rc, "allreduce");
    }
    return 0;
}

int kd_dist_sum_f32(float *v, size_t n) { return sum(v, n, MPI_FLOAT, sizeof *v); }
int kd_dist_sum_f64(double *v, size_t n) { return sum(v, n, MPI_DOUBLE, sizeof *v); }

static int gather(const void *send, size_t n, void *recv, MPI_Datatype t, size_t esz)
{
    if (!joined || size_ == 1) {
        memmove(recv, send, n * esz);
        return 0;
    }
    if (n > CHUNK) {
        kd_err_set("MPI: allgather of %zu values: at most %zu", n, CHUNK);
        return -1;
    }
    int rc = MPI_Allgather(send, (int)n, t, recv, (int)n, t, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : fail(rc, "allgather");
}

int kd_dist_allgather_f32(const float *send, size_t n, float *recv)
{
    return gather(send, n, recv, MPI_FLOAT, sizeof *send);
}

int kd_dist_allgather_i64(const int64_t *send, size_t n, int64_t *recv)
{
    return gather(send, n, recv, MPI_INT64_T, sizeof *send);
}

_Noreturn void kd_dist_abort(int code)
{
    if (joined && !done)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int kd_dist_finalize(void)
{
    if (!joined || done)
        return 0;
    done = 1;
    int rc = MPI_Finalize();
    return rc == MPI_SUCCESS ? 0 : fail(rc, "finalize");
}

#else /* one process */

int kd_dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}
int kd_dist_rank(void) { return 0; }
int kd_dist_size(void) { return 1; }
const char *kd_dist_describe(void) { return "MPI: no"; }
int kd_dist_sum_f32(float *v, size_t n) { return (void)v, (void)n, 0; }
int kd_dist_sum_f64(double *v, size_t n) { return (void)v, (void)n, 0; }
int kd_dist_allgather_f32(const float *send, size_t n, float *recv)
{
    memmove(recv, send, n * sizeof *send);
    return 0;
}
int kd_dist_allgather_i64(const int64_t *send, size_t n, int64_t *recv)
{
    memmove(recv, send, n * sizeof *send);
    return 0;
}
_Noreturn void kd_dist_abort(int code) { exit(code); }
int kd_dist_finalize(void) { return 0; }

#endif

/* Both builds: a sum, then / size (size 1: the identity). */
int kd_dist_mean_f32(float *v, size_t n)
{
    if (kd_dist_size() == 1)
        return 0;
    if (kd_dist_sum_f32(v, n))
        return -1;
    float inv = 1.0f / (float)kd_dist_size();
    for (size_t i = 0; i < n; i++)
        v[i] *= inv;
    return 0;
}

int kd_dist_mean_f64(double *v, size_t n)
{
    if (kd_dist_size() == 1)
        return 0;
    if (kd_dist_sum_f64(v, n))
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] /= kd_dist_size();
    return 0;
}
