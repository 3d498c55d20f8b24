/* teacher-extract — run a frozen model (eval mode) over a stream, adding its
 * outputs to every frame, or over a dataset file, writing a features file
 * (man teacher-extract). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_aug.h"
#include "kd_cli.h"
#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_filter.h"
#include "kd_gemm.h"
#include "kd_h5.h"
#include "kd_model.h"
#include "kd_model_io.h"
#include "kd_names.h"
#include "kd_stream.h"
#include "kd_tcache.h"

static const char help[] =
    "Usage: teacher-extract -m MODEL.h5 [OPTION]... [STREAM] [-o STREAM]\n"
    "  or:  teacher-extract --from-cache CACHE.h5 [STREAM] [-o STREAM]\n"
    "  or:  teacher-extract -m MODEL.h5 --features DATASET.h5 -o FEATURES.h5\n"
    "Run a frozen model in eval mode.  Stream filter: for every view tensor of\n"
    "every frame add, under the prefix, emb{i} (L2-normalised head embedding, if\n"
    "the model has a head), feat{i} (pooled features), logits{i} (if it has a\n"
    "classifier), with --maps map{i} and with --cam cam{i}; everything else passes\n"
    "through.\n"
    "Features mode: write /features, /logits, /labels for a dataset file.\n"
    "\n"
    "  -m, --model FILE      the model file (required unless --from-cache)\n"
    "  --save-cache FILE     stream mode: also store the added tensors in FILE\n"
    "  --from-cache FILE     add the tensors stored in FILE instead of running a\n"
    "                        model (the same augment stream, checked frame by frame)\n"
    "  --views LIST          view tensors, comma-separated (default: every viewN)\n"
    "  --prefix P            name prefix of the added tensors (default \"t.\")\n"
    "  --maps STAGE          also add that stage's feature map (1..stages, or last)\n"
    "  --cam                 also add cam{i} [B,K,h,w]: the classifier at every\n"
    "                        position of the last stage map (pooled: logits{i})\n"
    "  --no-feat             do not add feat{i}\n"
    "  --features DATASET    features mode: a dataset file (/images u8 [N,H,W,C])\n"
    "  --mean M[,M,M]        features mode: normalisation mean (default: the file's)\n"
    "  --std S[,S,S]         features mode: normalisation std (default: the file's)\n"
    "  --limit N             features mode: only the first N images\n"
    "  --batch B             images per forward pass (default 128)\n"
    "  --deflate             compress output frames\n"
    "  -o, --output FILE     output stream or features file ('-': stdout)\n"
    "Common options:\n"
    "  --threads N           BLIS and OpenMP threads (default: all cores)\n"
    "  --quiet               no progress line;  --seed S  accepted, unused\n"
    "  --progress            the progress line even when stderr is not a terminal\n"
    "  -h, --help            this help;  --version  version\n"
    "See teacher-extract(1).\n";

enum { OPT_VIEWS = KD_OPT_PROG, OPT_PREFIX, OPT_MAPS, OPT_FEATURES, OPT_MEAN, OPT_STD, OPT_LIMIT, OPT_BATCH,
       OPT_DEFLATE, OPT_NOFEAT, OPT_SAVE_CACHE, OPT_FROM_CACHE, OPT_CAM };

static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},
    {"views", required_argument, 0, OPT_VIEWS},
    {"prefix", required_argument, 0, OPT_PREFIX},
    {"maps", required_argument, 0, OPT_MAPS},
    {"no-feat", no_argument, 0, OPT_NOFEAT},
    {"cam", no_argument, 0, OPT_CAM},
    {"features", required_argument, 0, OPT_FEATURES},
    {"mean", required_argument, 0, OPT_MEAN},
    {"std", required_argument, 0, OPT_STD},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"batch", required_argument, 0, OPT_BATCH},
    {"deflate", no_argument, 0, OPT_DEFLATE},
    {"save-cache", required_argument, 0, OPT_SAVE_CACHE},
    {"from-cache", required_argument, 0, OPT_FROM_CACHE},
    {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

typedef struct {
    kd_model *m;
    int batch, maps; /* maps: stage, 0 = none */
    int cam;
    int ph, pw, pn;  /* prepared input size and batch */
} runner;

/* Prepare for h x w when the input size changes (growing only). */
static int runner_fit(runner *r, int n, int h, int w)
{
    int want = n < r->batch ? n : r->batch;
    if (r->pn >= want && r->ph == h && r->pw == w)
        return 0;
    if (want < r->pn && r->ph == h && r->pw == w)
        return 0;
    if (kd_model_prepare(r->m, want > r->pn ? want : r->pn, h, w))
        return -1;
    r->pn = want > r->pn ? want : r->pn;
    r->ph = h;
    r->pw = w;
    return 0;
}

static void l2norm(float *x, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < d; k++)
            s += (double)x[(size_t)i * d + k] * x[(size_t)i * d + k];
        /* F.normalize: x / max(||x||, 1e-12) */
        float inv = (float)(1.0 / fmax(sqrt(s), 1e-12));
        for (int k = 0; k < d; k++)
            x[(size_t)i * d + k] *= inv;
    }
}

/* Outputs of n images [C,h,w] from x, in chunks of the prepared batch. */
typedef struct {
    float *emb, *feat, *logits, *map, *cam;
} outs;

static int run(runner *r, const float *x, int n, int c, int h, int w, outs *o)
{
    kd_model *m = r->m;
    int D = kd_model_feat_dim(m), K = kd_model_num_classes(m), E = kd_model_emb_dim(m);
    int mc = 0, mh = 0, mw = 0, ck = 0, ch = 0, cw = 0;
    if (o->cam && kd_model_cam_shape(m, &ck, &ch, &cw))
        return -1;
    size_t per = (size_t)c * h * w;
    /* a NaN or infinity in or out would become features that look valid */
    int64_t bad = kd_first_nonfinite(x, (size_t)n * per);
    if (bad >= 0) {
        kd_err_set("image %lld holds a non-finite value (%g)", (long long)(bad / (int64_t)per), (double)x[bad]);
        return -1;
    }
    for (int s = 0; s < n; s += r->pn) {
        int b = n - s < r->pn ? n - s : r->pn;
        if (kd_model_forward(m, x + (size_t)s * per, b, 0, 0))
            return -1;
        if (kd_first_nonfinite(kd_model_features(m), (size_t)b * D) >= 0) {
            kd_err_set("the model's features of images %d..%d are not finite (its weights overflow?)", s,
                       s + b - 1);
            return -1;
        }
        if (o->feat)
            memcpy(o->feat + (size_t)s * D, kd_model_features(m), (size_t)b * D * sizeof(float));
        if (o->logits && K)
            memcpy(o->logits + (size_t)s * K, kd_model_logits(m), (size_t)b * K * sizeof(float));
        if (o->emb && E)
            memcpy(o->emb + (size_t)s * E, kd_model_embedding(m), (size_t)b * E * sizeof(float));
        if (o->map) {
            const float *mp = kd_model_stage_map(m, r->maps, &mc, &mh, &mw);
            if (!mp)
                return -1;
            memcpy(o->map + (size_t)s * mc * mh * mw, mp, (size_t)b * mc * mh * mw * sizeof(float));
        }
        if (o->cam && kd_model_cam(m, o->cam + (size_t)s * ck * ch * cw))
            return -1;
    }
    if (o->emb && E)
        l2norm(o->emb, n, E);
    return 0;
}

static int parse_floats(const char *opt, const char *s, float *v)
{
    int n = 0;
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == 3)
            kd_usage("%s: at most 3 values", opt);
        v[n++] = (float)kd_parse_double(opt, t, -1e6, 1e6);
    }
    if (n != 1 && n != 3)
        kd_usage("%s: 1 or 3 values", opt);
    return n;
}

/* ------------------------------------------------------------ stream mode */

/* Add family fam of view idx to f, its name to added[*nadd]; its data, or
 * NULL with kd_err. */
static float *add_out(kd_frame *f, kd_name_family fam, const char *prefix, int idx, const int64_t *dims, int rank,
                      char (*added)[KD_NAME_MAX], int *nadd)
{
    char nm[KD_NAME_MAX + 32];
    kd_name(nm, sizeof nm, fam, prefix, idx);
    kd_tensor *a = kd_frame_add(f, nm, KD_F32, rank, dims);
    if (!a)
        return NULL;
    memcpy(added[(*nadd)++], a->name, KD_NAME_MAX);
    return a->data;
}

/* The index of a view named on --views: its trailing number, else its position. */
static int view_index(const char *name, int pos)
{
    kd_name_family f;
    int i;
    return kd_name_split(name, NULL, 0, &f, &i) ? pos : i;
}

/* Both stream modes' input and output. */
static kd_writer *open_output(const char *out, int deflate, kd_reader **rd, const char *in)
{
    kd_writer *wr;
    int rc = kd_filter_open(in, out, deflate, rd, &wr);
    if (rc == -2)
        kd_usage("%s", kd_err_get());
    if (rc)
        kd_die_err();
    return wr;
}

static int stream_mode(runner *r, const char *in, const char *out, const char *views, const char *prefix,
                       int deflate, int want_feat, const char *save_cache, const kd_tcache_prov *prov,
                       kd_std_opts *std)
{
    kd_model *m = r->m;
    int C = kd_model_opts(m)->in_channels, D = kd_model_feat_dim(m), K = kd_model_num_classes(m),
        E = kd_model_emb_dim(m);
    /* parsed before any output is opened */
    char names[64][KD_NAME_MAX];
    int nviews = 0;
    if (views) {
        char buf[4096], *save = NULL;
        snprintf(buf, sizeof buf, "%s", views);
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (nviews == 64 || strlen(t) >= KD_NAME_MAX)
                kd_usage("--views: too many or too long names");
            snprintf(names[nviews++], KD_NAME_MAX, "%s", t);
        }
        if (!nviews)
            kd_usage("--views: empty list");
    }
    kd_reader *rd;
    kd_writer *wr = open_output(out, deflate, &rd, in);
    kd_tcache *cache = NULL; /* created after the stream opened: a usage error leaves no temporary behind */
    if (save_cache && !(cache = kd_tcache_create(save_cache, prov))) {
        kd_writer_abort(wr);
        kd_reader_close(rd);
        kd_die_err();
    }
    kd_frame f;
    kd_frame_init(&f);
    long long frames = 0, images = 0;
    int64_t due = -1; /* frames the stream holds, from the first frame's metadata */
    double t0 = kd_now();
    int rc;
    char added[KD_TCACHE_MAX_TENSORS][KD_NAME_MAX]; /* this frame's, in order: what a cache replays */
    while ((rc = kd_reader_next(rd, &f)) == 1) {
        int nv = nviews, nadd = 0;
        char fv[64][KD_NAME_MAX];
        if (!views) { /* every viewN of this frame */
            nv = kd_filter_views(&f, fv, 64);
            if (!nv) {
                kd_err_set("%s: frame %lld has no view tensors (view0, view1, ...)", in, frames);
                goto fail;
            }
        } else {
            memcpy(fv, names, sizeof names);
        }
        for (int v = 0; v < nv; v++) {
            kd_tensor *t = kd_frame_get(&f, fv[v]);
            if (!t) {
                kd_err_set("%s: frame %lld has no tensor '%s'", in, frames, fv[v]);
                goto fail;
            }
            if (t->dtype != KD_F32 || t->rank != 4) {
                kd_err_set("%s: frame %lld: '%s' is %s of rank %d, not f32 [N,C,H,W]", in, frames, fv[v],
                           kd_dtype_name(t->dtype), t->rank);
                goto fail;
            }
            int n = (int)t->dims[0], c = (int)t->dims[1], h = (int)t->dims[2], w = (int)t->dims[3];
            if (c != C) {
                kd_err_set("%s: frame %lld: '%s' has %d channels, the model takes %d", in, frames, fv[v], c, C);
                goto fail;
            }
            if (n < 1)
                continue;
            if (runner_fit(r, n, h, w))
                goto fail;
            int idx = view_index(fv[v], v);
            outs o = {0, 0, 0, 0, 0};
            int mc = 0, mh = 0, mw = 0, ck = 0, ch = 0, cw = 0;
            if ((r->maps && !kd_model_stage_map(m, r->maps, &mc, &mh, &mw)) ||
                (r->cam && kd_model_cam_shape(m, &ck, &ch, &cw)))
                goto fail;
            /* adding tensors may move t's array: look the view up again after */
            if ((E && !(o.emb = add_out(&f, KD_NAME_EMB, prefix, idx, (int64_t[]){n, E}, 2, added, &nadd))) ||
                (want_feat && !(o.feat = add_out(&f, KD_NAME_FEAT, prefix, idx, (int64_t[]){n, D}, 2, added, &nadd))) ||
                (K && !(o.logits = add_out(&f, KD_NAME_LOGITS, prefix, idx, (int64_t[]){n, K}, 2, added, &nadd))) ||
                (r->maps &&
                 !(o.map = add_out(&f, KD_NAME_MAP, prefix, idx, (int64_t[]){n, mc, mh, mw}, 4, added, &nadd))) ||
                (r->cam && !(o.cam = add_out(&f, KD_NAME_CAM, prefix, idx, (int64_t[]){n, ck, ch, cw}, 4, added, &nadd))))
                goto fail;
            /* the frame's tensor array may have been reallocated */
            t = kd_frame_get(&f, fv[v]);
            if (run(r, t->data, n, c, h, w, &o)) {
                kd_err_prefix("%s: frame %lld: '%s'", in, frames, fv[v]);
                goto fail;
            }
            images += n;
        }
        if ((cache && kd_tcache_put(cache, &f, frames, added, nadd)) || kd_writer_put(wr, &f))
            goto fail;
        if (++frames == 1)
            due = kd_filter_frames_due(&f);
        double dt = kd_now() - t0 + 1e-9;
        kd_progress_run(std, (long)frames, (long)due, frames / dt, "frames", "%lld images, %.0f images/s", images,
                        images / dt);
    }
    if (rc < 0)
        goto fail;
    /* the cache only once the stream ended cleanly; then the stream's end */
    if (cache && kd_tcache_commit(cache)) {
        cache = NULL;
        goto fail;
    }
    kd_progress_end(std);
    kd_reader_close(rd);
    kd_frame_free(&f);
    if (kd_writer_close(wr))
        kd_writer_fail(NULL);
    kd_filter_report(out, frames, images, t0);
    return 0;
fail:
    kd_progress_end(std);
    kd_tcache_abort(cache);
    kd_reader_close(rd);
    kd_frame_free(&f);
    kd_writer_fail(wr);
}

/* The teacher's tensors from a cache (no model): the same augment stream in,
 * the same bytes out as the live teacher wrote. */
static int cache_mode(const char *cpath, const char *in, const char *out, int deflate, kd_std_opts *std)
{
    kd_tcache *c = kd_tcache_open(cpath);
    if (!c)
        kd_die_err();
    kd_reader *rd;
    kd_writer *wr = open_output(out, deflate, &rd, in);
    kd_frame f;
    kd_frame_init(&f);
    long long frames = 0, images = 0;
    int64_t due = -1;
    double t0 = kd_now();
    int rc;
    while ((rc = kd_reader_next(rd, &f)) == 1) {
        const kd_tensor *x = kd_frame_cget(&f, KD_NAME_INDEX);
        images += x && x->rank == 1 ? x->dims[0] : 0;
        if (kd_tcache_add(c, &f, frames))
            goto fail;
        if (kd_writer_put(wr, &f))
            goto fail;
        if (++frames == 1)
            due = kd_filter_frames_due(&f);
        double dt = kd_now() - t0 + 1e-9;
        kd_progress_run(std, (long)frames, (long)due, frames / dt, "frames", "%lld images from the cache", images);
    }
    if (rc < 0)
        goto fail;
    kd_progress_end(std);
    kd_reader_close(rd);
    kd_frame_free(&f);
    kd_tcache_close(c);
    if (kd_writer_close(wr))
        kd_writer_fail(NULL);
    kd_filter_report(out, frames, images, t0);
    return 0;
fail:
    kd_progress_end(std);
    kd_reader_close(rd);
    kd_frame_free(&f);
    kd_tcache_close(c);
    kd_writer_fail(wr);
}

/* ---------------------------------------------------------- features mode */

static int features_mode(runner *r, const char *model_path, const char *ds, const char *out, const float *mean_o,
                         int nmean, const float *std_o, int nstd, long long limit, kd_std_opts *std)
{
    kd_model *m = r->m;
    int C = kd_model_opts(m)->in_channels, D = kd_model_feat_dim(m), K = kd_model_num_classes(m);
    if (!strcmp(out, "-"))
        kd_usage("--features needs -o FEATURES.h5 (HDF5 cannot go to a pipe)");
    kd_dataset_info di;
    kd_dataset_file *h = kd_dataset_open(ds, &di);
    if (!h)
        kd_die_err();
    int64_t N = di.n;
    int H = di.h, W = di.w;
    if (di.c != C)
        kd_die(KD_EXIT_FAIL, "%s: images have %d channels, the model takes %d", ds, di.c, C);
    if (limit > 0 && limit < N)
        N = limit;
    float mean[3], sd[3];
    kd_norm_overrides ov = {.nmean = nmean, .nstd = nstd};
    memcpy(ov.mean, mean_o, sizeof(float) * (size_t)nmean);
    memcpy(ov.std, std_o, sizeof(float) * (size_t)nstd);
    int nrc = kd_dataset_norm(&di, C, &ov, mean, sd);
    if (nrc == -2)
        kd_usage("%s", kd_err_get());
    if (nrc)
        kd_die_err();
    int has_labels = di.has_labels;
    int B = r->batch;
    if (runner_fit(r, B < N ? B : (int)N, H, W))
        kd_die_err();
    size_t per = (size_t)H * W * C;
    uint8_t *px = malloc((size_t)B * per);
    float *x = malloc((size_t)B * per * sizeof(float)), *feat = malloc((size_t)B * D * sizeof(float));
    float *logits = K ? malloc((size_t)B * K * sizeof(float)) : NULL;
    int32_t *lab = malloc((size_t)B * sizeof(int32_t));
    if (!px || !x || !feat || (K && !logits) || !lab)
        kd_die(KD_EXIT_FAIL, "out of memory for a batch of %d", B);
    kd_h5 o;
    if (kd_h5_create(&o, out, "features"))
        kd_die_err();
    int64_t fd[2] = {0, D}, kd2[2] = {0, K}, ld[1] = {0};
    if (kd_h5_create_ext(&o, "features", KD_F32, 2, fd, 0) || (K && kd_h5_create_ext(&o, "logits", KD_F32, 2, kd2, 0)) ||
        kd_h5_create_ext(&o, "labels", KD_I32, 1, ld, 0))
        goto fail;
    double t0 = kd_now();
    for (int64_t s = 0; s < N; s += B) {
        int b = (int)(N - s < B ? N - s : B);
        if (kd_dataset_read_rows(h, s, b, px, has_labels ? lab : NULL))
            goto fail;
        if (!has_labels) {
            for (int i = 0; i < b; i++)
                lab[i] = -1;
        }
        /* HWC u8 -> CHW float, (p/255 - mean)/std as torchvision's ToTensor+Normalize */
        for (int i = 0; i < b; i++) {
            kd_aug_from_u8(px + (size_t)i * per, H, W, C, x + (size_t)i * per, C);
            kd_aug_normalize(x + (size_t)i * per, C, H * W, mean, sd);
        }
        outs ou = {NULL, feat, logits, NULL, NULL};
        if (run(r, x, b, C, H, W, &ou)) {
            kd_err_prefix("%s: rows %lld..%lld", ds, (long long)s, (long long)(s + b - 1));
            goto fail;
        }
        if (kd_h5_append(&o, "features", KD_F32, feat, b) || (K && kd_h5_append(&o, "logits", KD_F32, logits, b)) ||
            kd_h5_append(&o, "labels", KD_I32, lab, b))
            goto fail;
        kd_progress_run(std, (long)(s + b), (long)N, (s + b) / (kd_now() - t0 + 1e-9), "images", "features");
    }
    kd_progress_end(std);
    const kd_arch_opts *ao = kd_model_opts(m);
    if (kd_h5_attr_set_str(&o, NULL, "model", model_path) || kd_h5_attr_set_str(&o, NULL, "arch", ao->arch) ||
        kd_h5_attr_set_str(&o, NULL, "layer", "pooled features (global average pool of the last stage)") ||
        kd_h5_attr_set_str(&o, NULL, "dataset", ds) || kd_h5_attr_set_f32v(&o, NULL, "mean", mean, C) ||
        kd_h5_attr_set_f32v(&o, NULL, "std", sd, C) || kd_h5_attr_set_str(&o, NULL, "program", "teacher-extract " KD_VERSION))
        goto fail;
    if (kd_h5_commit(&o))
        kd_die_err();
    kd_dataset_close(h);
    kd_json j;
    kd_json_begin(&j, stdout);
    kd_json_str(&j, "output", out);
    kd_json_int(&j, "images", (long long)N);
    kd_json_int(&j, "feat_dim", D);
    kd_json_int(&j, "num_classes", K);
    kd_json_num(&j, "images_per_s", N / (kd_now() - t0 + 1e-9));
    kd_json_end(&j);
    free(px);
    free(x);
    free(feat);
    free(logits);
    free(lab);
    return 0;
fail:
    kd_progress_end(std);
    kd_h5_abort(&o);
    free(px), free(x), free(feat), free(logits), free(lab);
    kd_die_err();
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    const char *model = NULL, *views = NULL, *prefix = KD_TEACHER_PREFIX, *maps = NULL, *features = NULL, *out = "-";
    const char *save_cache = NULL, *from_cache = NULL;
    int batch = 128, deflate = 0, want_feat = 1, cam = 0, nmean = 0, nstd = 0, live_opt = 0; /* live_opt: an option only a model uses */
    long long limit = -1;
    float mean[3], sd[3];
    int opt;
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case OPT_SAVE_CACHE: save_cache = optarg; break;
        case OPT_FROM_CACHE: from_cache = optarg; break;
        case OPT_VIEWS: views = optarg; break;
        case OPT_PREFIX:
            live_opt = 1;
            if (strlen(optarg) > 40)
                kd_usage("--prefix: at most 40 characters");
            prefix = optarg;
            break;
        case OPT_MAPS: maps = optarg; break;
        case OPT_NOFEAT: want_feat = 0, live_opt = 1; break;
        case OPT_CAM: cam = 1, live_opt = 1; break;
        case OPT_FEATURES: features = optarg; break;
        case OPT_MEAN: nmean = parse_floats("--mean", optarg, mean); break;
        case OPT_STD: nstd = parse_floats("--std", optarg, sd); break;
        case OPT_LIMIT: limit = kd_parse_long("--limit", optarg, 1, (long)1 << 40); break;
        case OPT_BATCH: batch = (int)kd_parse_long("--batch", optarg, 1, 1 << 16), live_opt = 1; break;
        case OPT_DEFLATE: deflate = 1; break;
        case 'o': out = optarg; break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (argc - optind > 1)
        kd_usage("one input stream expected, got %d arguments", argc - optind);
    if (from_cache) { /* the cache decides what is added: nothing of the live teacher's applies */
        if (model)
            kd_usage("--from-cache replaces the model: give -m or --from-cache, not both");
        if (save_cache || features || views || maps || live_opt || nmean || nstd || limit > 0)
            kd_usage("--from-cache adds what the cache holds; --save-cache, --features, --views, --prefix, --maps, "
                     "--no-feat, --cam, --batch, --mean, --std and --limit need a model");
        return cache_mode(from_cache, optind < argc ? argv[optind] : "-", out, deflate, &std);
    }
    if (!model && save_cache)
        kd_usage("--save-cache needs -m MODEL.h5: it stores what the model computes");
    if (!model)
        kd_usage("-m MODEL.h5 (or --from-cache CACHE.h5) is required");
    if (save_cache && features)
        kd_usage("--save-cache applies to stream mode only (a features file already keeps what the model computed)");
    if (features && optind < argc)
        kd_usage("--features takes no stream argument");
    if (features && (views || maps || cam))
        kd_usage("--views, --maps and --cam apply to stream mode only");
    kd_cli_output(features ? out : NULL); /* HDF5 outputs; a stream may go to a device or FIFO */
    kd_cli_output(save_cache);
    if (kd_gemm_init(kd_cli_threads(&std)))
        kd_die_err();
    kd_model *m = kd_model_load(model);
    if (!m)
        kd_die_err();
    runner r = {.m = m, .batch = batch, .cam = cam};
    if (maps) {
        if (!strcmp(maps, "last"))
            r.maps = kd_model_nstages(m);
        else
            r.maps = (int)kd_parse_long("--maps", maps, 1, 64);
        if (r.maps > kd_model_nstages(m))
            kd_usage("--maps: %s has stages 1..%d", kd_model_opts(m)->arch, kd_model_nstages(m));
        kd_model_keep_stage(m, r.maps);
    }
    if (cam) { /* the CAM reads the last stage map after the classifier ran */
        int ck, ch, cw;
        if (kd_model_cam_shape(m, &ck, &ch, &cw))
            kd_die_err();
        kd_model_keep_stage(m, kd_model_nstages(m));
    }
    kd_model_set_eval_only(m, 1);
    int64_t crc = -1;
    if (save_cache && kd_file_crc32(model, &crc))
        kd_die_err();
    kd_tcache_prov prov = {.model = model, .arch = kd_model_opts(m)->arch, .prefix = prefix,
                           .program = "teacher-extract " KD_VERSION, .model_crc32 = crc};
    int rc = features ? features_mode(&r, model, features, out, mean, nmean, sd, nstd, limit, &std)
                      : stream_mode(&r, optind < argc ? argv[optind] : "-", out, views, prefix, deflate, want_feat,
                                    save_cache, &prov, &std);
    kd_model_free(m);
    return rc;
}
