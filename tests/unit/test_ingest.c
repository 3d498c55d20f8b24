/* test_ingest — kd_idx on crafted files (plain and gzipped, truncated at
 * every byte, bad headers) and kd_dataset_stats against a double-precision
 * reference. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_idx.h"
#include "kd_test.h"

static char dir[] = "/tmp/kd_test_ingest_XXXXXX";

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* A u8 IDX of rank 3, dims 3x2x4, data i*7+1. */
static size_t make_idx(uint8_t *b)
{
    const uint8_t h[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4};
    memcpy(b, h, 16);
    for (int i = 0; i < 24; i++)
        b[16 + i] = (uint8_t)(i * 7 + 1);
    return 40;
}

static int data_ok(const kd_idx *x, int64_t n0)
{
    if (x->rank != 3 || x->dims[0] != n0 || x->dims[1] != 2 || x->dims[2] != 4)
        return 0;
    for (int i = 0; i < n0 * 8; i++)
        if (x->data[i] != (uint8_t)(i * 7 + 1))
            return 0;
    return 1;
}

static void test_idx_plain(void)
{
    uint8_t b[64];
    size_t n = make_idx(b);
    char p[256];
    snprintf(p, sizeof p, "%s/a-images-idx3-ubyte", dir);
    write_bytes(p, b, n);
    kd_idx x;
    KD_CHECK(kd_idx_read(&x, p, 0) == 0 && data_ok(&x, 3), "plain IDX read back");
    kd_idx_free(&x);
    KD_CHECK(kd_idx_read(&x, p, 2) == 0 && data_ok(&x, 2), "--limit 2 reads two items");
    kd_idx_free(&x);
    KD_CHECK(kd_idx_read(&x, p, 99) == 0 && data_ok(&x, 3), "a limit above N reads N");
    kd_idx_free(&x);

    int bad = 0;
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(p, b, cut);
        if (kd_idx_read(&x, p, 0) == 0 || !strstr(kd_err_get(), p) || !strstr(kd_err_get(), "short")) {
            if (!bad)
                printf("# cut at %zu: %s\n", cut, kd_err_get());
            bad++;
        }
        kd_idx_free(&x);
    }
    KD_CHECK(bad == 0, "every truncation of a plain IDX is a 'short file' error naming the path (%d missed)", bad);

    struct {
        int at;
        uint8_t v;
        const char *msg;
    } cases[] = {{0, 1, "bad IDX magic"},   {1, 0x80, "bad IDX magic"},  {3, 0, "bad IDX magic"},
                 {3, 5, "bad IDX magic"},   {2, 0x0d, "IDX type 0x0d"}, {7, 0, "bad IDX dimension 0"},
                 {12, 0x80, "short file"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t c[64];
        memcpy(c, b, n);
        c[cases[k].at] = cases[k].v;
        write_bytes(p, c, n);
        int rc = kd_idx_read(&x, p, 0);
        KD_CHECK(rc == -1 && strstr(kd_err_get(), cases[k].msg), "byte %d = 0x%02x refused: %s", cases[k].at,
                 cases[k].v, rc ? kd_err_get() : "(accepted)");
        kd_idx_free(&x);
    }
    /* a header announcing far more data than the file has */
    uint8_t c[64];
    memcpy(c, b, n);
    c[4] = 0x7f;
    write_bytes(p, c, n);
    KD_CHECK(kd_idx_read(&x, p, 0) == -1, "huge announced size refused: %s", kd_err_get());
    kd_idx_free(&x);
    snprintf(p, sizeof p, "%s/missing", dir);
    KD_CHECK(kd_idx_read(&x, p, 0) == -1 && strstr(kd_err_get(), "missing"), "missing file: %s", kd_err_get());
}

static void test_idx_gzip(void)
{
    uint8_t b[64];
    size_t n = make_idx(b);
    char p[256];
    snprintf(p, sizeof p, "%s/a-images-idx3-ubyte.gz", dir);
    gzFile g = gzopen(p, "wb");
    KD_CHECK(g && gzwrite(g, b, (unsigned)n) == (int)n && gzclose(g) == Z_OK, "gzip IDX written");
    FILE *f = fopen(p, "rb");
    uint8_t z[256];
    size_t zn = f ? fread(z, 1, sizeof z, f) : 0;
    if (f)
        fclose(f);
    kd_idx x;
    KD_CHECK(kd_idx_read(&x, p, 0) == 0 && data_ok(&x, 3), "gzipped IDX read back");
    kd_idx_free(&x);
    /* Cut anywhere: an error, or (cut inside the gzip trailer, after all the
     * data) the exact data; never garbage or a crash. */
    int bad = 0, errors = 0;
    for (size_t cut = 1; cut < zn; cut++) {
        write_bytes(p, z, cut);
        int rc = kd_idx_read(&x, p, 0);
        if (rc == 0 && !data_ok(&x, 3))
            bad++;
        errors += rc != 0;
        kd_idx_free(&x);
    }
    KD_CHECK(bad == 0 && errors > (int)zn / 2, "truncated gzip IDX: errors or exact data (%d errors of %zu, %d bad)",
             errors, zn - 1, bad);
    /* A flipped byte inside the deflate data or the CRC: an error or exact data. */
    bad = 0;
    for (size_t at = 10; at < zn; at++) {
        uint8_t c[256];
        memcpy(c, z, zn);
        c[at] ^= 0x55;
        write_bytes(p, c, zn);
        if (kd_idx_read(&x, p, 0) == 0 && !data_ok(&x, 3))
            bad++;
        kd_idx_free(&x);
    }
    KD_CHECK(bad == 0, "flipped gzip bytes never give silent garbage (%d bad)", bad);
}

static void test_stats(void)
{
    enum { N = 1000, C = 3 };
    static uint8_t px[N * C];
    uint32_t s = 12345;
    for (int i = 0; i < N * C; i++) {
        s = s * 1664525u + 1013904223u;
        px[i] = (uint8_t)(s >> 24) / (uint8_t)(1 + i % C);
    }
    float mean[C], std[C];
    kd_dataset_stats(px, N, C, mean, std);
    double worst = 0;
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (int i = 0; i < N; i++)
            m += px[i * C + c] / 255.0;
        m /= N;
        for (int i = 0; i < N; i++)
            v += (px[i * C + c] / 255.0 - m) * (px[i * C + c] / 255.0 - m);
        double sd = sqrt(v / N);
        worst = fmax(worst, fmax(fabs(mean[c] - m), fabs(std[c] - sd)));
    }
    KD_CHECK(worst < 1e-6, "per-channel mean/std match a double reference (max diff %.2g)", worst);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_idx_plain();
    test_idx_gzip();
    test_stats();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return KD_TEST_DONE();
}
