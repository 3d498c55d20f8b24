/* test_aug — lib/kd_aug and lib/kd_aug_policy.
 *
 * 1. Every case of tests/fixtures/aug_ops.h5 (torchvision 0.14 functional
 *    API on tensors, tests/gen/aug.py) is recomputed in C with the same
 *    parameters and must agree within 2/255 per pixel (scaled by 1/std for
 *    normalised outputs).
 * 2. Optimised kernels against their naive references.
 * 3. RandomResizedCrop sampling: boxes inside the image, area and ratio in
 *    range, the centre fallback; determinism of sampling; policy checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd_aug.h"
#include "kd_aug_policy.h"
#include "kd_err.h"
#include "kd_h5.h"
#include "kd_rng.h"
#include "kd_stream.h"
#include "kd_test.h"

#define TOL (2.0 / 255.0)

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))
            m = d;
    }
    return m;
}

static int run_case(kd_h5 *h, int i, double *worst)
{
    char g[32], op[64], img[64], dn[96];
    snprintf(g, sizeof g, "c%04d", i);
    float p[64] = {0};
    if (kd_h5_attr_get_str(h, g, "op", op, sizeof op) < 0 || kd_h5_attr_get_str(h, g, "image", img, sizeof img) < 0 ||
        kd_h5_attr_get_f32v(h, g, "p", p, 64) < 0) {
        KD_CHECK(0, "%s: %s", g, kd_err_get());
        return -1;
    }
    int64_t d[KD_MAX_RANK], od[KD_MAX_RANK];
    kd_dtype dt;
    int rank, orank;
    snprintf(dn, sizeof dn, "img_%s", img);
    char on[48];
    snprintf(on, sizeof on, "%s/out", g);
    if (kd_h5_info(h, dn, &dt, &rank, d) < 0 || rank != 3 || kd_h5_info(h, on, &dt, &orank, od) < 0 || orank != 3) {
        KD_CHECK(0, "%s: bad fixture layout", g);
        return -1;
    }
    int H = (int)d[0], W = (int)d[1], C = (int)d[2];
    size_t on_ = (size_t)(od[0] * od[1] * od[2]);
    uint8_t *u8 = malloc((size_t)H * W * C);
    float *want = malloc(on_ * sizeof(float));
    size_t big = (size_t)4 * 3 * (H + 64) * (W + 64) + 4 * on_;
    float *t = malloc(big * sizeof(float)), *got = malloc(big * sizeof(float)), *tmp = malloc(big * sizeof(float));
    if (!u8 || !want || !t || !got || !tmp || kd_h5_read(h, dn, KD_U8, 0, H, u8) < 0 ||
        kd_h5_read(h, on, KD_F32, 0, od[0], want) < 0) {
        KD_CHECK(0, "%s: cannot read: %s", g, kd_err_get());
        return -1;
    }
    kd_aug_from_u8(u8, H, W, C, t, C);
    const int n = H * W;
    double tol = TOL;
    int ok = 1;
    if (!strcmp(op, "from_u8")) {
        kd_aug_from_u8(u8, H, W, C, got, (int)p[0]);
    } else if (!strcmp(op, "resized_crop")) {
        kd_box b = {(int)p[0], (int)p[1], (int)p[2], (int)p[3]};
        kd_aug_resized_crop(t, C, H, W, b, got, (int)p[4], (int)p[5]);
        kd_aug_resized_crop_ref(t, C, H, W, b, tmp, (int)p[4], (int)p[5]);
        ok = maxdiff(got, tmp, on_) < 1e-5;
        kd_aug_resized_crop_u8(u8, C, H, W, b, tmp, (int)p[4], (int)p[5], 0);
        ok &= maxdiff(got, tmp, on_) == 0;
        kd_aug_resized_crop_u8(u8, C, H, W, b, tmp, (int)p[4], (int)p[5], 1);
        kd_aug_hflip(tmp, C, (int)p[4], (int)p[5]);
        ok &= maxdiff(got, tmp, on_) == 0;
    } else if (!strcmp(op, "crop")) {
        kd_box b = {(int)p[0], (int)p[1], (int)p[2], (int)p[3]};
        kd_aug_crop(t, C, H, W, b, got);
    } else if (!strcmp(op, "center_crop")) {
        kd_aug_crop(t, C, H, W, kd_aug_center_box(H, W, (int)p[0], (int)p[1]), got);
    } else if (!strcmp(op, "resize_short")) {
        int nh, nw;
        kd_aug_resize_short(H, W, (int)p[0], &nh, &nw);
        ok = nh == od[1] && nw == od[2];
        kd_box b = {0, 0, H, W};
        if (ok)
            kd_aug_resized_crop(t, C, H, W, b, got, nh, nw);
    } else if (!strcmp(op, "brightness") || !strcmp(op, "contrast") || !strcmp(op, "saturation") ||
               !strcmp(op, "hue") || !strcmp(op, "grayscale") || !strcmp(op, "hflip") ||
               !strcmp(op, "normalize") || !strcmp(op, "blur")) {
        memcpy(got, t, sizeof(float) * n * C);
        if (op[0] == 'b' && op[1] == 'r')
            kd_aug_brightness(got, C, n, p[0]);
        else if (op[0] == 'c')
            kd_aug_contrast(got, C, n, p[0]);
        else if (op[0] == 's')
            kd_aug_saturation(got, C, n, p[0]);
        else if (op[0] == 'h' && op[1] == 'u')
            kd_aug_hue(got, C, n, p[0]);
        else if (op[0] == 'g')
            kd_aug_grayscale(got, C, n);
        else if (op[0] == 'h')
            kd_aug_hflip(got, C, H, W);
        else if (op[0] == 'n') {
            kd_aug_normalize(got, C, n, p, p + C);
            for (int c = 0; c < C; c++)
                if (TOL / p[C + c] < tol || c == 0)
                    tol = TOL / p[C + c];
        } else {
            kd_aug_blur(got, C, H, W, (int)p[0], p[1], tmp);
            kd_aug_blur_ref(t, C, H, W, (int)p[0], p[1], tmp);
            ok = maxdiff(got, tmp, (size_t)n * C) < 1e-5;
        }
    } else if (!strcmp(op, "chain")) {
        kd_aug_policy pol;
        kd_aug_policy_init(&pol, KD_AUG_NONE, (int)p[1], (int)p[2], (int)p[0]);
        pol.jitter[0] = pol.jitter[1] = pol.jitter[2] = 0.4f;
        pol.jitter[3] = 0.1f;
        kd_aug_params v;
        memset(&v, 0, sizeof v);
        v.pre_h = (int)p[3];
        v.pre_w = (int)p[4];
        v.box.top = (int)p[5];
        v.box.left = (int)p[6];
        v.box.h = (int)p[7];
        v.box.w = (int)p[8];
        v.resize = (int)p[9];
        v.jitter = (int)p[10];
        for (int k = 0; k < 4; k++) {
            v.order[k] = (int)p[11 + k];
            v.factor[k] = p[15 + k];
        }
        v.gray = (int)p[19];
        v.blur = (int)p[20];
        v.ksize = (int)p[21];
        v.sigma = p[22];
        v.flip = (int)p[23];
        for (int c = 0; c < 3; c++) {
            pol.mean[c] = p[24 + c];
            pol.std[c] = p[27 + c];
        }
        tol = TOL / 0.2;
        /* kdpipe's kernel size rule must be what the fixture used */
        ok = kd_aug_blur_ksize(v.sigma, pol.oh, pol.ow) == v.ksize;
        float *scratch = malloc(kd_aug_scratch_floats(&pol, H, W) * sizeof(float) + 4 * big * sizeof(float));
        if (!scratch) {
            KD_CHECK(0, "oom");
            return -1;
        }
        kd_aug_apply(&pol, &v, u8, H, W, C, got, scratch);
        free(scratch);
    } else {
        KD_CHECK(0, "%s: unknown op %s", g, op);
        return -1;
    }
    double md = maxdiff(got, want, on_);
    if (md > *worst)
        *worst = md;
    KD_CHECK(ok && md <= tol, "%s %-12s %-9s p=[%g %g %g %g] max diff %.2g (tol %.2g)", g, op, img, p[0], p[1],
             p[2], p[3], md, tol);
    free(u8);
    free(want);
    free(t);
    free(got);
    free(tmp);
    return 0;
}

static void test_fixtures(void)
{
    const char *path = getenv("KD_AUG_FIXTURE") ? getenv("KD_AUG_FIXTURE") : "tests/fixtures/aug_ops.h5";
    kd_h5 h;
    if (kd_h5_open(&h, path, "fixture") < 0) {
        KD_CHECK(0, "open %s: %s", path, kd_err_get());
        return;
    }
    int64_t nc = 0;
    KD_CHECK(kd_h5_attr_get_i64(&h, NULL, "ncases", &nc) == 0 && nc > 100, "fixture has %lld cases", (long long)nc);
    double worst = 0;
    for (int i = 0; i < nc; i++)
        run_case(&h, i, &worst);
    printf("# worst difference against torchvision over %lld cases: %.3g (%.3f/255)\n", (long long)nc, worst,
           worst * 255);
    kd_h5_close(&h);
}

static void fill_random(float *x, size_t n, uint64_t seed)
{
    kd_rng r = kd_rng_make(seed, 1, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = kd_rng_uniform(&r);
}

static void test_kernels(void)
{
    enum { C = 3, H = 37, W = 29, MAX = C * 100 * 100 };
    static float src[C * H * W], a[MAX], b[MAX], tmp[MAX];
    fill_random(src, C * H * W, 7);
    kd_rng r = kd_rng_make(3, 0, 0);
    double worst = 0;
    for (int rep = 0; rep < 200; rep++) {
        kd_box box;
        box.h = 1 + (int)kd_rng_below(&r, H);
        box.w = 1 + (int)kd_rng_below(&r, W);
        box.top = (int)kd_rng_below(&r, (uint64_t)(H - box.h + 1));
        box.left = (int)kd_rng_below(&r, (uint64_t)(W - box.w + 1));
        int oh = 1 + (int)kd_rng_below(&r, 99), ow = 1 + (int)kd_rng_below(&r, 99);
        kd_aug_resized_crop(src, C, H, W, box, a, oh, ow);
        kd_aug_resized_crop_ref(src, C, H, W, box, b, oh, ow);
        double d = maxdiff(a, b, (size_t)C * oh * ow);
        if (d > worst)
            worst = d;
    }
    KD_CHECK(worst < 1e-5, "resized_crop vs reference, 200 random boxes/sizes: max diff %.2g", worst);
    worst = 0;
    for (int rep = 0; rep < 40; rep++) {
        float sigma = kd_rng_range(&r, 0.1f, 6.0f);
        int k = kd_aug_blur_ksize(sigma, H, W);
        memcpy(a, src, sizeof src);
        kd_aug_blur(a, C, H, W, k, sigma, tmp);
        kd_aug_blur_ref(src, C, H, W, k, sigma, b);
        double d = maxdiff(a, b, (size_t)C * H * W);
        if (d > worst)
            worst = d;
    }
    KD_CHECK(worst < 1e-5, "blur vs 2-D reference, 40 sigmas: max diff %.2g", worst);
    /* a kernel wider than the image reflects more than once and stays finite */
    memcpy(a, src, sizeof(float) * 3 * 2 * 2);
    kd_aug_blur(a, 3, 2, 2, 9, 3.0f, tmp);
    kd_aug_blur_ref(src, 3, 2, 2, 9, 3.0f, b);
    KD_CHECK(maxdiff(a, b, 12) < 1e-5, "blur on a 2x2 image with a 9-tap kernel");
    KD_CHECK(kd_aug_blur_ksize(0.1f, 100, 100) == 3 && kd_aug_blur_ksize(2.0f, 100, 100) == 13 &&
                 kd_aug_blur_ksize(2.0f, 5, 100) == 9 && kd_aug_blur_ksize(2.0f, 1, 1) == 1,
             "blur kernel size rule 2*ceil(3 sigma)+1, radius below the image size");
    /* hue shift of 0 and a full turn are (near) identity */
    memcpy(a, src, sizeof(float) * C * H * W);
    kd_aug_hue(a, C, H * W, 0.0f);
    KD_CHECK(maxdiff(a, src, (size_t)C * H * W) < 1e-5, "hue 0 is identity");
    memcpy(a, src, sizeof(float) * C * H * W);
    kd_aug_hflip(a, C, H, W);
    kd_aug_hflip(a, C, H, W);
    KD_CHECK(maxdiff(a, src, (size_t)C * H * W) == 0, "hflip twice is identity");
    /* 1-channel saturation and hue are identities, as torchvision */
    memcpy(a, src, sizeof(float) * H * W);
    kd_aug_saturation(a, 1, H * W, 0.2f);
    kd_aug_hue(a, 1, H * W, 0.3f);
    kd_aug_grayscale(a, 1, H * W);
    KD_CHECK(maxdiff(a, src, (size_t)H * W) == 0, "saturation/hue/grayscale on gray are identities");
}

static void test_rrc(void)
{
    const float scale[2] = {0.2f, 1.0f}, ratio[2] = {3.0f / 4, 4.0f / 3};
    int bad = 0, full = 0;
    double asum = 0, asum96 = 0;
    for (int i = 0; i < 20000; i++) {
        kd_rng r = kd_rng_make(11, 0, (uint64_t)i);
        int H = 28, W = 28;
        kd_box b96 = kd_aug_rrc_box(&r, 96, 96, scale, ratio);
        asum96 += (double)b96.h * b96.w / (96.0 * 96.0);
        kd_box b = kd_aug_rrc_box(&r, H, W, scale, ratio);
        if (b.top < 0 || b.left < 0 || b.h < 1 || b.w < 1 || b.top + b.h > H || b.left + b.w > W)
            bad++;
        double a = (double)b.h * b.w / ((double)H * W);
        asum += a;
        if (b.h == H && b.w == W)
            full++;
    }
    KD_CHECK(bad == 0, "20000 RandomResizedCrop boxes inside the image (%d outside)", bad);
    double am = asum / 20000, am96 = asum96 / 20000;
    /* torchvision 0.14's get_params over 20000 draws (torch.manual_seed(0)):
     * mean area fraction 0.5506 on 28x28 (0.4% whole image), 0.5436 on
     * 96x96; large boxes fail the bounds test more often, so under 0.6 */
    KD_CHECK(fabs(am - 0.5506) < 0.01 && fabs(am96 - 0.5436) < 0.01 && full > 20 && full < 150,
             "mean crop area fraction %.4f (28x28), %.4f (96x96), whole image %d/20000, as torchvision", am, am96,
             full);
    /* impossible scale -> centre fallback; wide image -> ratio-limited */
    const float big[2] = {5.0f, 6.0f};
    kd_rng r = kd_rng_make(1, 2, 3);
    kd_box b = kd_aug_rrc_box(&r, 28, 28, big, ratio);
    KD_CHECK(b.top == 0 && b.left == 0 && b.h == 28 && b.w == 28, "fallback: whole square image");
    b = kd_aug_rrc_box(&r, 20, 100, big, ratio);
    KD_CHECK(b.h == 20 && b.w == 27 && b.top == 0 && b.left == 36, "fallback: wide image -> centre 20x27 at 36 (%d %d %d %d)",
             b.top, b.left, b.h, b.w);
    b = kd_aug_rrc_box(&r, 100, 20, big, ratio);
    KD_CHECK(b.h == 27 && b.w == 20 && b.top == 36 && b.left == 0, "fallback: tall image -> centre 27x20");
}

static void test_policy(void)
{
    kd_aug_policy p;
    kd_aug_policy_init(&p, KD_AUG_MOCOV2, 28, 28, 1);
    KD_CHECK(kd_aug_policy_check(&p, 28, 28, 1) == 0, "mocov2 defaults valid");
    KD_CHECK(p.scale[0] == 0.2f && p.jitter[0] == 0.4f && fabsf(p.jitter[3] - 0.1f) < 1e-7f && p.jitter_p == 0.8f &&
                 p.gray_p == 0.2f && p.blur_p == 0.5f && p.flip_p == 0.5f,
             "mocov2 parameters as METHODS.md");
    kd_aug_policy q = p;
    q.jitter_p = 1.5f;
    KD_CHECK(kd_aug_policy_check(&q, 28, 28, 1) < 0 && strstr(kd_err_get(), "probability"), "p > 1 refused: %s",
             kd_err_get());
    q = p;
    q.scale[0] = -0.1f;
    KD_CHECK(kd_aug_policy_check(&q, 28, 28, 1) < 0 && strstr(kd_err_get(), "scale"), "negative scale refused: %s",
             kd_err_get());
    q = p;
    q.jitter[3] = 0.7f;
    KD_CHECK(kd_aug_policy_check(&q, 28, 28, 1) < 0, "hue 0.7 refused: %s", kd_err_get());
    kd_aug_policy_init(&q, KD_AUG_CROPFLIP, 40, 40, 1);
    KD_CHECK(kd_aug_policy_check(&q, 28, 28, 1) < 0 && strstr(kd_err_get(), "larger"), "crop 40 of 28+2*4 refused: %s",
             kd_err_get());
    kd_aug_policy_init(&q, KD_AUG_CROPFLIP, 36, 36, 1);
    KD_CHECK(kd_aug_policy_check(&q, 28, 28, 1) == 0, "crop 36 of 28+2*4 allowed");
    KD_CHECK(kd_aug_kind_parse("crop-flip") == KD_AUG_CROPFLIP && kd_aug_kind_parse("x") < 0 &&
                 !strcmp(kd_aug_kind_name(KD_AUG_SIMCLR), "simclr"),
             "policy names");

    /* sampling is a function of the rng state only */
    kd_aug_params v1, v2;
    kd_rng r1 = kd_rng_make(5, 1, 42), r2 = kd_rng_make(5, 1, 42), r3 = kd_rng_make(5, 2, 42);
    kd_aug_sample(&p, &r1, 28, 28, &v1);
    kd_aug_sample(&p, &r2, 28, 28, &v2);
    KD_CHECK(memcmp(&v1, &v2, sizeof v1) == 0, "same rng -> same view parameters");
    int differ = 0;
    for (int i = 0; i < 10; i++) {
        kd_aug_sample(&p, &r3, 28, 28, &v2);
        differ += memcmp(&v1.box, &v2.box, sizeof v1.box) != 0;
    }
    KD_CHECK(differ >= 8, "other rng -> other boxes (%d/10)", differ);
    /* frequencies of the random ops over many views */
    int nj = 0, ng = 0, nb = 0, nf = 0, N = 20000;
    for (int i = 0; i < N; i++) {
        kd_rng r = kd_rng_make(9, 0, (uint64_t)i);
        kd_aug_sample(&p, &r, 28, 28, &v1);
        nj += v1.jitter;
        ng += v1.gray;
        nb += v1.blur;
        nf += v1.flip;
        int seen = 0;
        for (int k = 0; k < 4; k++)
            seen |= 1 << v1.order[k];
        if (seen != 15 || v1.factor[0] < 0.6f || v1.factor[0] > 1.4f || fabsf(v1.factor[3]) > 0.1f ||
            v1.sigma < 0.1f || v1.sigma > 2.0f) {
            KD_CHECK(0, "sampled parameters out of range");
            break;
        }
    }
    KD_CHECK(fabs(nj / (double)N - 0.8) < 0.02 && fabs(ng / (double)N - 0.2) < 0.02 &&
                 fabs(nb / (double)N - 0.5) < 0.02 && fabs(nf / (double)N - 0.5) < 0.02,
             "frequencies jitter %.3f gray %.3f blur %.3f flip %.3f", nj / (double)N, ng / (double)N, nb / (double)N,
             nf / (double)N);

    /* a whole mocov2 view on an RGB image stays finite and normalised */
    enum { H = 50, W = 60 };
    static uint8_t img[H * W * 3];
    for (int i = 0; i < H * W * 3; i++)
        img[i] = (uint8_t)(i * 37 % 251);
    kd_aug_policy_init(&p, KD_AUG_SIMCLR, 32, 32, 3);
    float *scratch = malloc(kd_aug_scratch_floats(&p, H, W) * sizeof(float));
    static float out[3 * 32 * 32];
    int finite = 1;
    for (int i = 0; i < 200 && scratch; i++) {
        kd_rng r = kd_rng_make(1, 0, (uint64_t)i);
        kd_aug_view(&p, &r, img, H, W, 3, out, scratch);
        for (int k = 0; k < 3 * 32 * 32; k++)
            finite &= out[k] >= 0.0f && out[k] <= 1.0f;
    }
    KD_CHECK(scratch && finite, "200 simclr views of an RGB image: all values in [0,1] (mean 0, std 1)");
    kd_aug_policy_init(&p, KD_AUG_EVAL, 24, 24, 1);
    KD_CHECK(kd_aug_policy_check(&p, H, W, 3) == 0, "eval 24 of 50x60 ok");
    kd_rng r = kd_rng_make(0, 0, 0);
    kd_aug_sample(&p, &r, H, W, &v1);
    KD_CHECK(v1.pre_h == 24 && v1.pre_w == 28 && v1.box.top == 0 && v1.box.left == 2 && !v1.resize,
             "eval: resize to 24x28, centre crop at (0,2)");
    free(scratch);
}

/* test_aug --summary STREAM: one line per frame for tests/augment.bats
 * (tensor-info may not be built): metadata, then per tensor name, dtype,
 * shape, min, max, mean; int tensors also list their first 8 values. */
static int summary(const char *path)
{
    kd_reader *r = kd_reader_open(path);
    if (!r) {
        fprintf(stderr, "test_aug: %s\n", kd_err_get());
        return 1;
    }
    kd_frame f;
    kd_frame_init(&f);
    int rc, k = 0;
    while ((rc = kd_reader_next(r, &f)) == 1) {
        printf("frame %d", k++);
        for (int m = 0; m < f.nmeta; m++)
            printf(" %s=%s", f.meta[m].key, f.meta[m].val);
        printf("\n");
        for (int i = 0; i < f.n; i++) {
            kd_tensor *t = &f.t[i];
            int64_t n = kd_tensor_numel(t);
            printf("  %s %s [", t->name, kd_dtype_name(t->dtype));
            for (int d = 0; d < t->rank; d++)
                printf("%s%lld", d ? "," : "", (long long)t->dims[d]);
            double mn = INFINITY, mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < n; j++) {
                double v = t->dtype == KD_F32   ? ((float *)t->data)[j]
                           : t->dtype == KD_I64 ? (double)((int64_t *)t->data)[j]
                           : t->dtype == KD_I32 ? ((int32_t *)t->data)[j]
                                                : ((uint8_t *)t->data)[j];
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
                sum += v;
            }
            printf("] min %.4f max %.4f mean %.4f", mn, mx, n ? sum / n : 0);
            if (t->dtype == KD_I64 || t->dtype == KD_I32) {
                printf(" sum %.0f values", sum);
                for (int64_t j = 0; j < n && j < 8; j++)
                    printf(" %lld", t->dtype == KD_I64 ? (long long)((int64_t *)t->data)[j]
                                                      : (long long)((int32_t *)t->data)[j]);
            }
            printf("\n");
        }
    }
    kd_frame_free(&f);
    kd_reader_close(r);
    if (rc < 0) {
        fprintf(stderr, "test_aug: %s\n", kd_err_get());
        return 1;
    }
    printf("frames %d\n", k);
    return 0;
}

/* test_aug --shards FULL S0 .. S(N-1): every frame of FULL is the
 * concatenation (along the batch) of the same frame of the shards, tensor
 * by tensor, byte for byte; the shards' metadata is FULL's plus
 * shard=R/N.  Prints "shards ok: F frames" or what differs. */
static int shards(const char *full, int N, char **paths)
{
    kd_reader *rf = kd_reader_open(full), *rs[16];
    kd_frame f, s[16];
    int rc = 1, k = 0;
    if (!rf || N > 16)
        return fprintf(stderr, "test_aug: %s\n", rf ? "at most 16 shards" : kd_err_get()), 1;
    kd_frame_init(&f);
    for (int r = 0; r < N; r++) {
        kd_frame_init(&s[r]);
        if (!(rs[r] = kd_reader_open(paths[r])))
            return fprintf(stderr, "test_aug: %s\n", kd_err_get()), 1;
    }
    for (;; k++) {
        int a = kd_reader_next(rf, &f), ended = a == 0;
        for (int r = 0; r < N; r++)
            if (kd_reader_next(rs[r], &s[r]) != a) {
                printf("frame %d: shard %d %s\n", k, r, ended ? "goes on" : "ended or failed");
                goto out;
            }
        if (a < 0) {
            fprintf(stderr, "test_aug: %s\n", kd_err_get());
            goto out;
        }
        if (ended)
            break;
        for (int r = 0; r < N; r++) {
            char want[32];
            snprintf(want, sizeof want, "%d/%d", r, N);
            const char *got = kd_frame_meta_get(&s[r], "shard");
            if (!got || strcmp(got, want) || s[r].nmeta != f.nmeta + 1 || s[r].n != f.n) {
                printf("frame %d: shard %d: metadata or tensors differ (shard=%s)\n", k, r, got ? got : "none");
                goto out;
            }
            for (int m = 0; m < f.nmeta; m++) {
                const char *v = kd_frame_meta_get(&s[r], f.meta[m].key);
                if (!v || strcmp(v, f.meta[m].val)) {
                    printf("frame %d: shard %d: %s differs\n", k, r, f.meta[m].key);
                    goto out;
                }
            }
        }
        for (int i = 0; i < f.n; i++) {
            const kd_tensor *t = &f.t[i];
            size_t off = 0;
            for (int r = 0; r < N; r++) {
                const kd_tensor *u = kd_frame_get(&s[r], t->name);
                if (!u || u->dtype != t->dtype || off + u->nbytes > t->nbytes ||
                    memcmp((const char *)t->data + off, u->data, u->nbytes)) {
                    printf("frame %d: %s of shard %d is not its slice\n", k, t->name, r);
                    goto out;
                }
                off += u->nbytes;
            }
            if (off != t->nbytes) {
                printf("frame %d: the shards of %s are short\n", k, t->name);
                goto out;
            }
        }
    }
    printf("shards ok: %d frames\n", k);
    rc = 0;
out:
    kd_frame_free(&f);
    kd_reader_close(rf);
    for (int r = 0; r < N; r++) {
        kd_frame_free(&s[r]);
        kd_reader_close(rs[r]);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--summary"))
        return summary(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "--shards"))
        return shards(argv[2], argc - 3, argv + 3);
    test_fixtures();
    test_kernels();
    test_rrc();
    test_policy();
    return KD_TEST_DONE();
}
