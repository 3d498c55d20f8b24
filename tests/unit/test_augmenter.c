/* kd_augment: the reproducibility contract.  The views of (seed, epoch,
 * index) are the same whatever batch the image is in, its position there,
 * the thread count or whether images come from memory or from the file;
 * and kd_augmenter_frame writes what bin/augment writes. */
#include <stdlib.h>
#include <string.h>

#include "kd_augment.h"
#include "kd_err.h"
#include "kd_names.h"
#include "kd_stream.h"
#include "kd_test.h"

#define FX "tests/fixtures/aug_fm.h5"
#define V 2

static int64_t n;
static int H, W, C;
static uint8_t *images;
static kd_dataset_file *df;
static kd_aug_policy pol;

static kd_augmenter *make(int threads, int from_file)
{
    kd_augmenter_opts o = {.pol = &pol, .h = H, .w = W, .c = C, .images = from_file ? NULL : images,
                           .file = df, .views = V, .threads = threads, .seed = 11, .epochs = 1, .batches = 1};
    return kd_augmenter_new(&o);
}

/* views of idx[0..b) in epoch e: out[v] [b, vsz] */
static int views_of(kd_augmenter *a, uint64_t e, const int64_t *idx, int b, float *out, size_t vsz)
{
    float *vp[V];
    for (int v = 0; v < V; v++)
        vp[v] = out + (size_t)v * b * vsz;
    return kd_augmenter_batch(a, e, idx, b, vp);
}

int main(void)
{
    kd_dataset_info di;
    df = kd_dataset_open(FX, &di);
    KD_CHECK(df != NULL, "open %s%s%s", FX, df ? "" : ": ", df ? "" : kd_err_get());
    if (!df)
        return KD_TEST_DONE();
    n = di.n, H = di.h, W = di.w, C = di.c;
    images = malloc((size_t)n * H * W * C);
    KD_CHECK(images && kd_dataset_read_rows(df, 0, n, images, NULL) == 0, "read images");
    kd_aug_policy_init(&pol, KD_AUG_MOCOV2, H, W, C);
    kd_aug_overrides ov;
    kd_aug_overrides_init(&ov);
    KD_CHECK(kd_aug_policy_apply_overrides(&pol, &ov, &di) == 0, "normalisation from the file's mean/std");
    const size_t vsz = (size_t)pol.oc * pol.oh * pol.ow;

    /* reference: every image alone, one thread */
    kd_augmenter *one = make(1, 0), *two = make(2, 0), *file = make(1, 1), *three = make(3, 0);
    KD_CHECK(one && two && file && three, "four augmenters (1, 2, 3 threads, from the file)");
    const int B = 24;
    float *ref = malloc(sizeof(float) * V * B * vsz), *got = malloc(sizeof(float) * V * B * vsz);
    int64_t idx[24];
    for (int i = 0; i < B; i++)
        idx[i] = (i * 37 + 5) % n; /* a scattered batch */
    int ok = 1;
    for (int i = 0; i < B && ok; i++) {
        float tmp[V * 28 * 28 * 3];
        if (vsz > 28 * 28 * 3 || views_of(one, 4, &idx[i], 1, tmp, vsz))
            ok = 0;
        for (int v = 0; ok && v < V; v++)
            memcpy(ref + ((size_t)v * B + i) * vsz, tmp + (size_t)v * vsz, vsz * sizeof(float));
    }
    KD_CHECK(ok, "views of single images");
    kd_augmenter *as[3] = {two, three, file};
    const char *what[3] = {"2 threads", "3 threads", "read from the file"};
    for (int k = 0; k < 3; k++) {
        KD_CHECK(views_of(as[k], 4, idx, B, got, vsz) == 0, "batch of %d, %s", B, what[k]);
        KD_CHECK(!memcmp(ref, got, sizeof(float) * V * B * vsz), "batch of %d, %s: the same views as each image alone",
                 B, what[k]);
    }
    /* another composition: the same images reversed, in a batch of 7 + 17 */
    int64_t rev[24];
    for (int i = 0; i < B; i++)
        rev[i] = idx[B - 1 - i];
    int same = 1;
    for (int part = 0; part < 2; part++) {
        int s = part ? 7 : 0, b = part ? B - 7 : 7;
        if (views_of(two, 4, rev + s, b, got, vsz)) {
            same = 0;
            break;
        }
        for (int i = 0; i < b; i++)
            for (int v = 0; v < V; v++) {
                int r = B - 1 - (s + i);
                same &= !memcmp(got + ((size_t)v * b + i) * vsz, ref + ((size_t)v * B + r) * vsz, vsz * sizeof(float));
            }
    }
    KD_CHECK(same, "reversed batches of 7 and 17: each image's views unchanged");
    /* the epoch and the seed do change them */
    KD_CHECK(views_of(one, 5, idx, B, got, vsz) == 0 && memcmp(ref, got, sizeof(float) * V * B * vsz),
             "epoch 5 differs from epoch 4");

    /* kd_augmenter_frame = what bin/augment writes: augment --batch 24
     * --no-shuffle --seed 11 --limit 24 makes frame 0 of images 0..23 */
    kd_frame fr;
    kd_frame_init(&fr);
    int64_t seq[24];
    for (int i = 0; i < B; i++)
        seq[i] = i;
    KD_CHECK(kd_augmenter_frame(one, &fr, 0, 0, seq, B) == 0, "frame");
    KD_CHECK(kd_frame_meta_i64(&fr, KD_META_EPOCHS, -1) == 1 && kd_frame_meta_i64(&fr, KD_META_BATCHES, -1) == 1,
             "frame metadata epochs/batches");
    int rc = system("bin/augment --batch 24 --no-shuffle --seed 11 --limit 24 " FX " -o /tmp/test_augmenter.kdt"
                    " >/dev/null");
    kd_reader *rd = rc == 0 ? kd_reader_open("/tmp/test_augmenter.kdt") : NULL;
    KD_CHECK(rd != NULL, "bin/augment ran");
    if (rd) {
        kd_frame g;
        kd_frame_init(&g);
        KD_CHECK(kd_reader_next(rd, &g) == 1, "read augment's frame");
        char name[KD_NAME_MAX];
        for (int v = 0; v < V; v++) {
            kd_tensor *a = kd_frame_get(&fr, kd_name(name, sizeof name, KD_NAME_VIEW, NULL, v));
            kd_tensor *b = kd_frame_get(&g, name);
            KD_CHECK(a && b && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes),
                     "%s equals bin/augment's", name);
        }
        kd_frame_free(&g);
        kd_reader_close(rd);
        remove("/tmp/test_augmenter.kdt");
    }
    kd_frame_free(&fr);
    free(ref);
    free(got);
    kd_augmenter_free(one);
    kd_augmenter_free(two);
    kd_augmenter_free(three);
    kd_augmenter_free(file);
    kd_dataset_close(df);
    free(images);
    return KD_TEST_DONE();
}
