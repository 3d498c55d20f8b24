/* make_corpus — writes the seed corpus of every harness (tests/fuzz/corpus/
 * NAME/) with the library's own writers, so that each seed is a valid input
 * of its reader: `make fuzz-corpus` runs it.  Seeds are kept tiny (the
 * whole corpus well under 200 KB): model weights are zeros, which deflate
 * to nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_model_io.h"
#include "kd_names.h"
#include "kd_png.h"
#include "kd_stream.h"

static const char *root;

static void put(const char *name, const void *data, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        perror(p);
        exit(1);
    }
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    uint8_t *b = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap && !(b = realloc(b, cap = cap ? 2 * cap : 65536)))
            exit(1);
        size_t k = fread(b + *n, 1, cap - *n, f);
        if (!k)
            break;
        *n += k;
    }
    fclose(f);
    return b;
}

static void check(int rc)
{
    if (rc) {
        fprintf(stderr, "make_corpus: %s\n", kd_err_get());
        exit(1);
    }
}

/* A frame of a label, an index and a small float view, with metadata. */
static void stream_seeds(void)
{
    kd_frame f;
    kd_frame_init(&f);
    int64_t b = 2, vd[4] = {2, 1, 3, 3};
    kd_tensor *t = kd_frame_add(&f, KD_NAME_LABEL, KD_I32, 1, &b);
    ((int32_t *)t->data)[0] = 3;
    ((int32_t *)t->data)[1] = 7;
    t = kd_frame_add(&f, KD_NAME_INDEX, KD_I64, 1, &b);
    ((int64_t *)t->data)[0] = 0; /* kd_frame_add does not zero */
    ((int64_t *)t->data)[1] = 1;
    t = kd_frame_add(&f, "view0", KD_F32, 4, vd);
    for (int i = 0; i < 18; i++)
        ((float *)t->data)[i] = (float)i / 4;
    check(kd_frame_meta_set(&f, KD_META_EPOCH, "0") || kd_frame_meta_set(&f, KD_META_STEP, "0"));
    uint8_t *buf = NULL, all[8192];
    size_t len = 0, cap = 0;
    for (int z = 0; z < 2; z++) {
        check(kd_frame_encode(&f, z ? KD_W_DEFLATE : 0, &buf, &len, &cap));
        /* fuzz_stream: two frames and the end marker */
        size_t n = 0;
        memcpy(all, buf, len);
        memcpy(all + len, buf, len);
        n = 2 * len + kd_stream_end_encode(2, all + 2 * len);
        put(z ? "stream/two-deflated" : "stream/two-plain", all, n);
        /* fuzz_frame(_z): the 7-byte prefix and the payload of the same frame */
        uint8_t pre[8192];
        pre[0] = buf[8];
        pre[1] = buf[9];
        pre[2] = buf[12];
        memcpy(pre + 3, buf + 24, 4);
        memcpy(pre + 7, buf + 40, len - 40);
        put(z ? "frame_z/seed" : "frame/seed", pre, len - 33);
    }
    free(buf);
    kd_frame_free(&f);
}

static void idx_seeds(void)
{
    uint8_t img[4 + 12 + 2 * 3 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
    for (int i = 16; i < (int)sizeof img; i++)
        img[i] = (uint8_t)(i * 37);
    put("idx/images", img, sizeof img);
    uint8_t lab[4 + 4 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 9, 0};
    put("idx/labels", lab, sizeof lab);
    char p[4096];
    snprintf(p, sizeof p, "%s/idx/images.gz", root);
    gzFile g = gzopen(p, "wb");
    if (!g || gzwrite(g, img, sizeof img) != (int)sizeof img || gzclose(g) != Z_OK)
        exit(1);
}

static void cifar_seeds(void)
{
    /* mode 0: CIFAR-10, one record; mode 3: CIFAR-100 with a names file */
    static uint8_t rec[2 + 3073], rec100[2 + 40 + 2 * 3074];
    rec[0] = 0;
    rec[2] = 4;
    for (int i = 0; i < 3072; i++)
        rec[3 + i] = (uint8_t)i;
    put("cifar/c10", rec, sizeof rec);
    const char names[] = "apple\nbee\n\n  cat \n";
    rec100[0] = 3;
    rec100[1] = (uint8_t)strlen(names);
    memcpy(rec100 + 2, names, strlen(names));
    uint8_t *r = rec100 + 2 + strlen(names);
    r[0] = 1, r[1] = 2, r[3074] = 0, r[3075] = 1;
    put("cifar/c100", rec100, (size_t)(2 + strlen(names) + 2 * 3074));
}

static void png_seeds(void)
{
    uint8_t pix[4 * 5 * 3];
    for (int i = 0; i < (int)sizeof pix; i++)
        pix[i] = (uint8_t)(i * 11);
    char p[4096];
    for (int c = 1; c <= 3; c += 2) {
        snprintf(p, sizeof p, "%s/png/tmp.png", root);
        check(kd_png_write(p, pix, 4, 5, c));
        size_t n;
        uint8_t *b = slurp(p, &n);
        remove(p);
        uint8_t *m = malloc(n + 1);
        m[0] = c == 1 ? 0 : 3; /* gray as is; RGB twice, resized */
        memcpy(m + 1, b, n);
        put(c == 1 ? "png/gray" : "png/rgb", m, n + 1);
        free(m);
        free(b);
    }
}

static void h5_seed(const char *tmp, const char *name)
{
    size_t n;
    uint8_t *b = slurp(tmp, &n);
    remove(tmp);
    put(name, b, n);
    free(b);
}

static void dataset_seeds(void)
{
    uint8_t im[2 * 4 * 4 * 3], mk[2 * 4 * 4] = {0, 1, 1, 0};
    for (int i = 0; i < (int)sizeof im; i++)
        im[i] = (uint8_t)(i * 5);
    int32_t lab[2] = {0, 1}, bl[3] = {0, 1, 1};
    char *cls[2] = {"cat", "dog"};
    float bx[12] = {0, 0, 2, 2, 1, 1, 3, 2, 0.5f, 0, 1, 4};
    int64_t off[3] = {0, 1, 3};
    char p[4096];
    snprintf(p, sizeof p, "%s/dataset/tmp.h5", root);
    kd_dataset d = {.n = 2, .h = 4, .w = 4, .c = 3, .images = im, .labels = lab, .nclasses = 2, .classes = cls,
                    .source = "seed"};
    check(kd_dataset_write(&d, p));
    h5_seed(p, "dataset/classify");
    d.nboxes = 3, d.boxes = bx, d.box_labels = bl, d.box_offsets = off, d.masks = mk;
    check(kd_dataset_write(&d, p));
    h5_seed(p, "dataset/detect");
}

static void model_seed(void)
{
    kd_arch_opts o = {.arch = "resnet8x4", .in_channels = 1, .num_classes = 2};
    kd_model *m = kd_model_new(&o, 0);
    if (!m)
        check(-1);
    size_t n;
    float *w = kd_model_params(m, &n);
    memset(w, 0, n * sizeof *w);
    char p[4096];
    snprintf(p, sizeof p, "%s/model/tmp.h5", root);
    check(kd_model_save(m, p));
    h5_seed(p, "model/resnet8x4");
    kd_model_free(m);
}

static void text(const char *name, const char *s) { put(name, s, strlen(s)); }

static void coco_seeds(void)
{
    const char *gt = "{\"images\":[{\"id\":1},{\"id\":2}],\"categories\":[{\"id\":1,\"name\":\"cat\"},{\"id\":3}],"
                     "\"annotations\":[{\"id\":5,\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,10,20],\"area\":150},"
                     "{\"image_id\":2,\"category_id\":3,\"bbox\":[0,0,4,4],\"iscrowd\":1}]}";
    const char *dt = "[{\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,9,19],\"score\":0.9},"
                     "{\"image_id\":2,\"category_id\":3,\"bbox\":[1,1,3,3],\"score\":0.4}]";
    char s[2048];
    snprintf(s, sizeof s, "%s\n----\n%s", gt, dt);
    text("coco/gt-dets", s);
    text("coco/gt", gt);
}

/* fuzz_opts: a selector byte (program index, then loss options, then the
 * word parsers) and newline-separated words. */
static void opts_seed(const char *name, int sel, const char *words)
{
    char s[1024];
    s[0] = (char)sel;
    snprintf(s + 1, sizeof s - 1, "%s", words);
    put(name, s, 1 + strlen(words));
}

static void opts_seeds(void)
{
    opts_seed("opts/aggregate", 0, "--gamma\n2.5\n-o\nout.kdt\nin.kdt");
    opts_seed("opts/augment", 1, "--policy\nmocov2\n--size\n32x24\n--views\n2\n--batch\n8\n--epochs\n1");
    opts_seed("opts/dataset", 2, "--from\nfashion-mnist\n--limit\n10\n--split\ntest\n-o\nd.h5");
    opts_seed("opts/detect-eval", 3, "--gt\ngt.json\n--dets\nd.h5");
    opts_seed("opts/detect-train", 4, "-m\nm.h5\n--epochs\n2\n--lr\n0.01\n--batch\n4");
    opts_seed("opts/detect", 5, "-m\nm.h5\n--score-thresh\n0.1\n-o\nx");
    opts_seed("opts/distill-step", 6, "-m\nm.h5\n--loss\nkd:1,crd:0.8\n--loss-opt\nkd.kd-t=4\n--kd-t\n2\n--lr\n0.1\n"
                                      "--schedule\nstep:1,2\n--threads\n2\n--seed\n7");
    opts_seed("opts/linprobe", 7, "--epochs\n3\n--lr\n0.5\n--batch\n64");
    opts_seed("opts/model-init", 8, "--arch\nresnet20\n--head\nmlp:64:32:bn\n--width-mult\n0.5\n-o\nm.h5");
    opts_seed("opts/teacher-extract", 9, "-m\nt.h5\n--maps\n2,3\n--mean\n0.5\n--batch\n16\n--help");
    opts_seed("opts/tensor-info", 10, "--version\n--quiet");
    opts_seed("opts/loss", 11, "dkd\ndkd-alpha=1\ndkd-beta=8\ndkd-t=4\ndkd-warmup=20");
    opts_seed("opts/words", 12, "cosine\nstep:150,180,210\nmax 100000\n150000 100000\nf32\nsimclr");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    const char *dirs[] = {"stream", "frame", "frame_z", "idx", "cifar", "png", "dataset", "model", "coco", "opts"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char p[4096];
        snprintf(p, sizeof p, "mkdir -p '%s/%s'", root, dirs[i]);
        if (system(p))
            return 1;
    }
    stream_seeds();
    idx_seeds();
    cifar_seeds();
    png_seeds();
    dataset_seeds();
    model_seed();
    coco_seeds();
    opts_seeds();
    return 0;
}
