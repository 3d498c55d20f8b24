/* Unit tests of the foundation: GEMM against its naive reference, the RNG,
 * the stream codec, the HDF5 helpers (round trips and refusals), and the
 * stream names. */
#include <blis.h>
#include <sched.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_cpu.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_gemm.h"
#include "kd_h5.h"
#include "kd_names.h"
#include "kd_rng.h"
#include "kd_stream.h"
#include "kd_test.h"

static void test_gemm(void)
{
    kd_rng r = kd_rng_make(1, 2, 3);
    int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 33, 129}, {128, 257, 96}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
                float *C = malloc(sizeof(float) * M * N), *R = malloc(sizeof(float) * M * N);
                for (int i = 0; i < M * K; i++) A[i] = kd_rng_normal(&r);
                for (int i = 0; i < K * N; i++) B[i] = kd_rng_normal(&r);
                for (int i = 0; i < M * N; i++) C[i] = R[i] = kd_rng_normal(&r);
                int lda = ta ? M : K, ldb = tb ? K : N;
                kd_gemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C, N);
                kd_gemm_ref(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, R, N);
                double e = kd_test_relerr(C, R, (long)M * N, 1e-6);
                KD_CHECK(e < 1e-5, "gemm %dx%dx%d ta=%d tb=%d relerr %.2e", M, N, K, ta, tb, e);
                for (int i = 0; i < M * N; i++) C[i] = R[i] = kd_rng_normal(&r);
                kd_gemm_serial(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C, N);
                kd_gemm_ref(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, R, N);
                e = kd_test_relerr(C, R, (long)M * N, 1e-6);
                KD_CHECK(e < 1e-5, "gemm_serial %dx%dx%d ta=%d tb=%d relerr %.2e", M, N, K, ta, tb, e);
                free(A); free(B); free(C); free(R);
            }
    /* auto-selected (no BLIS_ARCH_TYPE): exactly kd_gemm's choice from the
     * CPU's features; set by the environment: one of BLIS's x86/arm names */
    const char *arch = kd_gemm_arch(), *want = "generic";
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        want = "skx";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "haswell";
    static const char *known[] = {"skx", "knl", "knc", "haswell", "sandybridge", "penryn", "zen", "zen2", "zen3",
                                  "zen4", "zen5", "excavator", "steamroller", "piledriver", "bulldozer", "armsve",
                                  "a64fx", "firestorm", "thunderx2", "cortexa57", "cortexa53", "cortexa15",
                                  "cortexa9", "power10", "power9", "power7", "bgq", "generic"};
    int isknown = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        isknown |= !strcmp(arch, known[i]);
    if (!strcmp(kd_gemm_arch_source(), "auto"))
        KD_CHECK(!strcmp(arch, want), "BLIS kernels: %s, auto-selected from the CPU's features (%s expected)", arch,
                 want);
    else
        KD_CHECK(isknown, "BLIS kernels: %s (%s), one of BLIS's names", arch, kd_gemm_arch_source());
}

static void test_rng(void)
{
    kd_rng a = kd_rng_make(7, 1, 2), b = kd_rng_make(7, 1, 2), c = kd_rng_make(7, 1, 3);
    int same = 1, diff = 0;
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t x = kd_rng_u64(&a), y = kd_rng_u64(&b), z = kd_rng_u64(&c);
        same &= x == y;
        diff += x != z;
        sum += kd_rng_uniform(&c);
    }
    KD_CHECK(same, "same key gives the same draws");
    KD_CHECK(diff == 10000, "different key gives different draws");
    KD_CHECK(sum / 10000 > 0.48 && sum / 10000 < 0.52, "uniform mean %.4f", sum / 10000);
    int64_t perm[100], seen[100] = {0};
    kd_rng_permute(&a, perm, 100);
    int ok = 1;
    for (int i = 0; i < 100; i++) ok &= perm[i] >= 0 && perm[i] < 100 && !seen[perm[i]]++;
    KD_CHECK(ok, "permutation is a permutation");
}

static void fill_frame(kd_frame *f)
{
    int64_t d1[] = {3}, d2[] = {2, 3, 4}, d0[] = {0, 5};
    kd_tensor *t = kd_frame_add(f, "u8", KD_U8, 1, d1);
    memcpy(t->data, "\x01\xff\x7f", 3);
    t = kd_frame_add(f, "i32", KD_I32, 1, d1);
    int32_t i32[] = {-1, 0, 2147483647};
    memcpy(t->data, i32, sizeof i32);
    t = kd_frame_add(f, "i64", KD_I64, 1, d1);
    int64_t i64[] = {-5, 1LL << 40, 9};
    memcpy(t->data, i64, sizeof i64);
    t = kd_frame_add(f, "view0", KD_F32, 3, d2);
    for (int i = 0; i < 24; i++) ((float *)t->data)[i] = (float)i * 0.5f - 3.0f;
    kd_frame_add(f, "empty", KD_F32, 2, d0);
    kd_frame_add(f, "scalar", KD_F32, 0, NULL);
    *(float *)kd_frame_get(f, "scalar")->data = 42.0f;
    kd_frame_meta_set(f, "epoch", "%d", 3);
    kd_frame_meta_set(f, "note", "hello world");
}

static int frames_equal(const kd_frame *a, const kd_frame *b)
{
    if (a->n != b->n || a->nmeta != b->nmeta)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const kd_tensor *x = &a->t[i], *y = kd_frame_cget(b, x->name);
        if (!y || x->dtype != y->dtype || x->rank != y->rank || x->nbytes != y->nbytes ||
            memcmp(x->dims, y->dims, sizeof(int64_t) * (size_t)x->rank) ||
            (x->nbytes && memcmp(x->data, y->data, x->nbytes)))
            return 0;
    }
    for (int i = 0; i < a->nmeta; i++) {
        const char *v = kd_frame_meta_get(b, a->meta[i].key);
        if (!v || strcmp(v, a->meta[i].val))
            return 0;
    }
    return 1;
}

static void test_stream(void)
{
    kd_frame f, g;
    kd_frame_init(&f);
    kd_frame_init(&g);
    fill_frame(&f);
    for (int flags = 0; flags < 2; flags++) {
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        KD_CHECK(kd_frame_encode(&f, flags, &buf, &len, &cap) == 0, "encode flags=%d", flags);
        /* two frames back to back, then the end marker */
        uint8_t *two = malloc(2 * len + KD_STREAM_END_MAX + 1);
        memcpy(two, buf, len);
        memcpy(two + len, buf, len);
        size_t elen = kd_stream_end_encode(2, two + 2 * len);
        FILE *m = fmemopen(two, 2 * len + elen, "rb");
        kd_reader *r = kd_reader_fopen(m, "mem");
        int a = kd_reader_next(r, &g);
        KD_CHECK(a == 1 && frames_equal(&f, &g), "round trip frame 1 flags=%d", flags);
        a = kd_reader_next(r, &g);
        KD_CHECK(a == 1 && frames_equal(&f, &g), "round trip frame 2 flags=%d", flags);
        KD_CHECK(kd_reader_next(r, &g) == 0 && kd_reader_next(r, &g) == 0, "end marker, then EOF");
        kd_reader_close(r);
        fclose(m);
        /* without the marker (the writer died), with a wrong count, with data after it */
        m = fmemopen(two, 2 * len, "rb");
        r = kd_reader_fopen(m, "mem");
        a = kd_reader_next(r, &g) + kd_reader_next(r, &g);
        KD_CHECK(a == 2 && kd_reader_next(r, &g) == -1 &&
                     !strcmp(kd_err_get(), "mem: the stream ended without its end marker (the writer died?) after 2 frames"),
                 "EOF without the end marker: %s", kd_err_get());
        kd_reader_close(r);
        fclose(m);
        m = fmemopen(two + len, len + elen, "rb");
        r = kd_reader_fopen(m, "mem");
        a = kd_reader_next(r, &g);
        KD_CHECK(a == 1 && kd_reader_next(r, &g) == -1 && strstr(kd_err_get(), "frame 1 at byte") &&
                     strstr(kd_err_get(), "a malformed end marker (it must hold only frames=1, the count of frames before it)"),
                 "an end marker with the wrong count: %s", kd_err_get());
        kd_reader_close(r);
        fclose(m);
        two[2 * len + elen] = 'K';
        m = fmemopen(two, 2 * len + elen + 1, "rb");
        r = kd_reader_fopen(m, "mem");
        a = kd_reader_next(r, &g) + kd_reader_next(r, &g);
        KD_CHECK(a == 2 && kd_reader_next(r, &g) == -1 && strstr(kd_err_get(), "data after the end marker"),
                 "data after the end marker: %s", kd_err_get());
        kd_reader_close(r);
        fclose(m);
        /* every truncation is an error naming a byte offset */
        int bad = 0;
        for (size_t cut = 1; cut < len; cut++) {
            m = fmemopen(buf, cut, "rb");
            r = kd_reader_fopen(m, "mem");
            int rc = kd_reader_next(r, &g);
            if (rc != -1 || !strstr(kd_err_get(), "at byte"))
                bad++;
            kd_reader_close(r);
            fclose(m);
        }
        KD_CHECK(bad == 0, "every truncation detected (flags=%d, %zu offsets, %d missed)", flags, len - 1, bad);
        /* every flipped byte is an error */
        bad = 0;
        for (size_t i = 0; i < len; i++) {
            buf[i] ^= 0x5a;
            m = fmemopen(buf, len, "rb");
            r = kd_reader_fopen(m, "mem");
            if (kd_reader_next(r, &g) != -1)
                bad++;
            kd_reader_close(r);
            fclose(m);
            buf[i] ^= 0x5a;
        }
        KD_CHECK(bad == 0, "every flipped byte detected (flags=%d, %d missed)", flags, bad);
        /* the writer (piecewise when plain) produces the same bytes */
        char wpath[] = "/tmp/kd_test_w_XXXXXX";
        close(mkstemp(wpath));
        kd_writer *w = kd_writer_open(wpath, flags);
        int wok = w && kd_writer_put(w, &f) == 0 && kd_writer_close(w) == 0;
        unsigned char *wb = NULL;
        size_t wl = 0;
        uint8_t one[KD_STREAM_END_MAX];
        size_t olen = kd_stream_end_encode(1, one);
        wok = wok && kd_file_slurp(wpath, &wb, &wl) == 0 && wl == len + olen && !memcmp(wb, buf, len) &&
              !memcmp(wb + len, one, olen);
        KD_CHECK(wok, "writer bytes equal kd_frame_encode + the end marker (flags=%d)", flags);
        free(wb);
        unlink(wpath);
        free(two);
        free(buf);
    }
    kd_frame_remove(&f, "i32");
    KD_CHECK(!kd_frame_get(&f, "i32") && kd_frame_get(&f, "view0"), "remove keeps the others");
    kd_frame_free(&f);
    kd_frame_free(&g);
}

static void test_h5(void)
{
    char path[] = "/tmp/kd_test_h5_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    kd_h5 h;
    KD_CHECK(kd_h5_create(&h, path, "features") == 0, "create");
    int64_t dims[] = {0, 3};
    KD_CHECK(kd_h5_create_ext(&h, "features", KD_F32, 2, dims, 4) == 0, "create_ext");
    float rows[30];
    for (int i = 0; i < 30; i++) rows[i] = (float)i;
    int ok = 1;
    for (int p = 0; p < 10; p += 3) /* pieces of 3,3,3,1 rows */
        ok &= kd_h5_append(&h, "features", KD_F32, rows + 3 * p, p + 3 <= 10 ? 3 : 1) == 0;
    KD_CHECK(ok, "append in pieces");
    int64_t d1[] = {4};
    int32_t lab[] = {1, 2, 3, 4};
    KD_CHECK(kd_h5_write(&h, "grp/labels", KD_I32, 1, d1, lab) == 0, "write with group");
    const char *names[] = {"a", "bb"};
    KD_CHECK(kd_h5_attr_set_strv(&h, NULL, "classes", names, 2) == 0, "strv attr");
    float mean[] = {0.5f};
    KD_CHECK(kd_h5_attr_set_f32v(&h, NULL, "mean", mean, 1) == 0, "f32v attr");
    KD_CHECK(kd_h5_commit(&h) == 0, "commit");

    KD_CHECK(kd_h5_open(&h, path, "dataset") == -1 && strstr(kd_err_get(), "expected a 'dataset'"),
             "wrong kind refused: %s", kd_err_get());
    KD_CHECK(kd_h5_open(&h, path, "features") == 0, "reopen");
    int64_t got[2];
    KD_CHECK(kd_h5_expect(&h, "features", 2, (int64_t[]){-1, 3}, got) == 0 && got[0] == 10, "10 rows");
    float back[30];
    KD_CHECK(kd_h5_read(&h, "features", KD_F32, 0, 10, back) == 0 && !memcmp(back, rows, sizeof back),
             "read back equal");
    KD_CHECK(kd_h5_read(&h, "features", KD_F32, 8, 3, back) == -1, "read past the end refused");
    KD_CHECK(kd_h5_info(&h, "nope", &(kd_dtype){0}, &(int){0}, got) == -1 && strstr(kd_err_get(), "no dataset 'nope'"),
             "missing dataset: %s", kd_err_get());
    char **cls;
    int n = kd_h5_attr_get_strv(&h, NULL, "classes", &cls);
    KD_CHECK(n == 2 && !strcmp(cls[1], "bb"), "strv back");
    kd_strv_free(cls, n);
    kd_h5_close(&h);

    KD_CHECK(kd_h5_open_rw(&h, path, NULL) == 0 && kd_h5_attr_set_i64(&h, NULL, "kdpipe_format", 99) == 0,
             "bump format");
    kd_h5_close(&h);
    KD_CHECK(kd_h5_open(&h, path, NULL) == -1 && strstr(kd_err_get(), "not supported"), "newer format refused: %s",
             kd_err_get());
    /* truncate the file */
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    KD_CHECK(truncate(path, sz / 2) == 0, "truncate");
    KD_CHECK(kd_h5_open(&h, path, NULL) == -1, "truncated file refused: %s", kd_err_get());
    f = fopen(path, "wb");
    fputs("not hdf5 at all\n", f);
    fclose(f);
    KD_CHECK(kd_h5_open(&h, path, NULL) == -1 && strstr(kd_err_get(), "not an HDF5 file"), "text refused");
    unlink(path);
    KD_CHECK(kd_h5_open(&h, path, NULL) == -1 && strstr(kd_err_get(), "No such file"), "missing refused");
}

/* kd_name_split inverts kd_name for every family and refuses what is not a name */
static void test_names(void)
{
    int ok = 1;
    for (int f = 0; f < KD_NAME_NFAMILIES; f++) {
        char nm[KD_NAME_MAX], pre[16];
        kd_name_family g;
        int i;
        kd_name(nm, sizeof nm, (kd_name_family)f, f % 2 ? "s." : NULL, 12);
        ok &= !kd_name_split(nm, pre, sizeof pre, &g, &i) && (int)g == f && i == 12 &&
              !strcmp(pre, f % 2 ? "s." : f == KD_NAME_VIEW ? "" : KD_TEACHER_PREFIX);
    }
    KD_CHECK(ok, "kd_name_split(kd_name(f, prefix, 12)) gives f, the prefix and 12 for every family");
    kd_name_family g;
    int i;
    char pre[3];
    KD_CHECK(!kd_name_split("t.msdw3", pre, sizeof pre, &g, &i) && g == KD_NAME_MSDW && i == 3 &&
                 !kd_name_split("t.msd3", NULL, 0, &g, &i) && g == KD_NAME_MSD,
             "t.msdw3 is msdw, t.msd3 msd");
    KD_CHECK(kd_name_split("t.cam", pre, sizeof pre, &g, &i) == -1 && kd_name_split("label", pre, sizeof pre, &g, &i) == -1 &&
                 kd_name_split("t.bogus0", pre, sizeof pre, &g, &i) == -1 &&
                 kd_name_split("teacher.cam0", pre, sizeof pre, &g, &i) == -1,
             "refused: no index, no family, a prefix longer than the buffer");
}

/* The default thread count is what the process may use, not the online cores. */
static void test_cpu(void)
{
    KD_CHECK(kd_cpu_quota_parse("max 100000\n") == 0 && kd_cpu_quota_parse("150000 100000\n") == 2 &&
                 kd_cpu_quota_parse("100000 100000") == 1 && kd_cpu_quota_parse("50000 100000") == 1 &&
                 kd_cpu_quota_parse("-1 100000") == 0 && kd_cpu_quota_parse("junk") == 0,
             "cgroup quotas: v2 max, rounded up, v1 -1");
    cpu_set_t all, one;
    if (!KD_REQUIRE(sched_getaffinity(0, sizeof all, &all) == 0, "sched_getaffinity"))
        return;
    int n = CPU_COUNT(&all), first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    unsetenv("OMP_NUM_THREADS");
    KD_CHECK(kd_cpu_usable() <= n && kd_cpu_available() == kd_cpu_usable(), "available %d of the %d CPUs of the mask",
             kd_cpu_available(), n);
    KD_CHECK(sched_setaffinity(0, sizeof one, &one) == 0 && kd_cpu_available() == 1, "taskset to one CPU: %d",
             kd_cpu_available());
    kd_gemm_init(0);
    KD_CHECK(omp_get_max_threads() == 1 && bli_thread_get_num_threads() == 1,
             "kd_gemm_init(0) on one CPU: OpenMP %d, BLIS %d", omp_get_max_threads(),
             (int)bli_thread_get_num_threads());
    sched_setaffinity(0, sizeof all, &all);
    setenv("OMP_NUM_THREADS", "1", 1);
    KD_CHECK(kd_cpu_available() == 1, "OMP_NUM_THREADS=1 caps it");
    setenv("OMP_NUM_THREADS", "100000", 1);
    KD_CHECK(kd_cpu_available() == kd_cpu_usable(), "OMP_NUM_THREADS above the CPUs does not raise it");
    unsetenv("OMP_NUM_THREADS");
}

int main(void)
{
    test_cpu();
    kd_gemm_init(0);
    test_names();
    test_gemm();
    test_rng();
    test_stream();
    test_h5();
    /* --threads N reaches both BLIS and the layers' OpenMP loops */
    kd_gemm_init(1);
    KD_CHECK(omp_get_max_threads() == 1 && bli_thread_get_num_threads() == 1, "kd_gemm_init(1): OpenMP %d, BLIS %d",
             omp_get_max_threads(), (int)bli_thread_get_num_threads());
    kd_gemm_init(3);
    KD_CHECK(omp_get_max_threads() == 3 && bli_thread_get_num_threads() == 3, "kd_gemm_init(3): OpenMP %d, BLIS %d",
             omp_get_max_threads(), (int)bli_thread_get_num_threads());
    return KD_TEST_DONE();
}
