/* aggregate — a model-free stream filter turning a map tensor into local
 * descriptors: MSD's multi-scale regions and their categorisation weights,
 * or SSA's sparse spatial aggregation (man aggregate). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_err.h"
#include "kd_filter.h"
#include "kd_gemm.h"
#include "kd_names.h"
#include "kd_regions.h"
#include "kd_ssa.h"
#include "kd_stream.h"

static const char help[] =
    "Usage: aggregate --in NAME --scales LIST [OPTION]... [STREAM] [-o STREAM]\n"
    "  or:  aggregate --in NAME --sparse-topk K [--gamma G] [STREAM] [-o STREAM]\n"
    "Model-free stream filter: reads the map tensor NAME (f32 [B,C,h,w]) of every\n"
    "frame and adds local descriptors; everything else passes through.\n"
    "  --scales: MSD's multi-scale regions: msd{i} f32 [B,R,C], the map averaged\n"
    "    over the windows of every scale (R = 1+4+16 = 21 for 1,2,4; region 0 the\n"
    "    global average), and msdw{i} f32 [B,R], the categorisation weights: 1\n"
    "    where a region's argmax over C equals region 0's, --weight-comp otherwise\n"
    "    (meaningful for class-activation maps, cam{i}, whose C is the classes).\n"
    "  --sparse-topk: SSA: ssa{i} f32 [B,C,h,w], per position the L2-normalised\n"
    "    average of the K most similar positions' normalised features, weighted\n"
    "    by max(cosine,0)^G (the position itself always among them).\n"
    "Output names: the input's prefix and number (t.cam0 -> t.msd0, t.msdw0).\n"
    "\n"
    "  --in NAME             the map tensor (required), e.g. t.cam0 or t.map0\n"
    "  --scales LIST         comma-separated grid sizes, the first 1 (e.g. 1,2,4)\n"
    "  --stride S            sliding windows of ceil(h/s) x ceil(w/s) moved by S\n"
    "                        instead of adaptive-pooling cells (default 0: cells)\n"
    "  --weight-comp W       weight of a complementary region (default 2)\n"
    "  --l2                  L2-normalise every region descriptor over C\n"
    "  --sparse-topk K       positions kept per position (K >= 1)\n"
    "  --gamma G             exponent of the similarity weights (default 2)\n"
    "  --out NAME            name of the descriptors (msd or ssa) instead\n"
    "  --out-weights NAME    name of the categorisation weights instead\n"
    "  --deflate             compress output frames\n"
    "  -o, --output FILE     output stream (default '-': stdout)\n"
    "Common options:\n"
    "  --threads N           BLIS threads (default: all cores)\n"
    "  --quiet               no progress line;  --seed S  accepted, unused\n"
    "  --progress            the progress line even when stderr is not a terminal\n"
    "  -h, --help            this help;  --version  version\n"
    "See aggregate(1).\n";

enum { OPT_IN = KD_OPT_PROG, OPT_SCALES, OPT_STRIDE, OPT_WCOMP, OPT_L2, OPT_TOPK, OPT_GAMMA, OPT_OUT, OPT_OUTW,
       OPT_DEFLATE };

static const struct option longopts[] = {
    {"in", required_argument, 0, OPT_IN},
    {"scales", required_argument, 0, OPT_SCALES},
    {"stride", required_argument, 0, OPT_STRIDE},
    {"weight-comp", required_argument, 0, OPT_WCOMP},
    {"l2", no_argument, 0, OPT_L2},
    {"sparse-topk", required_argument, 0, OPT_TOPK},
    {"gamma", required_argument, 0, OPT_GAMMA},
    {"out", required_argument, 0, OPT_OUT},
    {"out-weights", required_argument, 0, OPT_OUTW},
    {"deflate", no_argument, 0, OPT_DEFLATE},
    {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

typedef struct {
    const char *in;
    char out[KD_NAME_MAX], outw[KD_NAME_MAX];
    int msd; /* 1: regions; 0: ssa */
    kd_regions reg;
    float wcomp;
    int l2;
    int topk;
    float gamma;
    /* ssa scratch, grown to the largest frame */
    float *ws, *wt, *norms;
    int32_t *idx;
    size_t ws_cap, wt_cap, idx_cap, norms_cap;
} agg;

static void parse_scales(const char *s, kd_regions *r)
{
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", s);
    r->nscales = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (r->nscales == KD_REGIONS_MAX_SCALES)
            kd_usage("--scales: at most %d scales", KD_REGIONS_MAX_SCALES);
        r->scales[r->nscales++] = (int)kd_parse_long("--scales", t, 1, 4096);
    }
    if (!r->nscales)
        kd_usage("--scales: empty list");
    if (r->scales[0] != 1)
        kd_usage("--scales: the first scale must be 1 (region 0 is the global average)");
}

/* The output name of family f for the input name, or the override. */
static void derive(const char *in, const char *override, kd_name_family f, const char *opt, char *out)
{
    if (override) {
        if (strlen(override) >= KD_NAME_MAX)
            kd_usage("%s: at most %d characters", opt, KD_NAME_MAX - 1);
        snprintf(out, KD_NAME_MAX, "%s", override);
        return;
    }
    char pre[KD_NAME_MAX];
    kd_name_family g;
    int i;
    if (kd_name_split(in, pre, sizeof pre, &g, &i) || strlen(pre) > 40)
        kd_usage("--in %s: not a PREFIX FAMILY NUMBER name (such as t.cam0): give %s", in, opt);
    kd_name(out, KD_NAME_MAX, f, pre, i);
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    void *q = realloc(*p, n * size);
    if (!q) {
        kd_err_set("out of memory for %zu bytes of scratch", n * size);
        return -1;
    }
    *p = q, *cap = n;
    return 0;
}

/* The input map of frame k, checked: f32 [B,C,h,w] with finite values. */
static kd_tensor *input(kd_frame *f, const char *in, const char *stream, long long k)
{
    kd_tensor *t = kd_frame_get(f, in);
    if (!t) {
        kd_err_set("%s: frame %lld has no tensor '%s'", stream, k, in);
        return NULL;
    }
    if (t->dtype != KD_F32 || t->rank != 4) {
        kd_err_set("%s: frame %lld: '%s' is %s of rank %d, not f32 [B,C,h,w]", stream, k, in, kd_dtype_name(t->dtype),
                   t->rank);
        return NULL;
    }
    const float *x = t->data;
    int64_t n = kd_tensor_numel(t), chw = t->dims[1] * t->dims[2] * t->dims[3], hw = t->dims[2] * t->dims[3];
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            kd_err_set("%s: frame %lld: '%s' has a non-finite value (%g) at [%lld,%lld,%lld,%lld]", stream, k, in,
                       (double)x[i], (long long)(i / chw), (long long)(i % chw / hw),
                       (long long)(i % hw / t->dims[3]), (long long)(i % t->dims[3]));
            return NULL;
        }
    return t;
}

static int run_msd(agg *a, kd_frame *f, const char *stream, long long k, int B, int C, int h, int w)
{
    int R = kd_regions_count(&a->reg, h, w);
    if (R < 0) {
        kd_err_prefix("%s: frame %lld: '%s' [%d,%d,%d,%d]", stream, k, a->in, B, C, h, w);
        return -1;
    }
    int64_t d3[3] = {B, R, C}, d2[2] = {B, R};
    kd_tensor *o = kd_frame_add(f, a->out, KD_F32, 3, d3), *ow = o ? kd_frame_add(f, a->outw, KD_F32, 2, d2) : NULL;
    if (!ow)
        return -1;
    o = kd_frame_get(f, a->out); /* adding may have moved the tensors */
    const kd_tensor *x = kd_frame_get(f, a->in);
    kd_regions_forward(&a->reg, x->data, B, C, h, w, o->data);
    kd_regions_categorise(o->data, B, R, C, a->wcomp, ow->data);
    if (a->l2) {
        float *z = o->data;
        for (long r = 0; r < (long)B * R; r++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += (double)z[r * C + c] * z[r * C + c];
            float inv = (float)(1.0 / fmax(sqrt(s), 1e-12)); /* F.normalize's clamp */
            for (int c = 0; c < C; c++)
                z[r * C + c] *= inv;
        }
    }
    return 0;
}

static int run_ssa(agg *a, kd_frame *f, const char *stream, long long k, int B, int C, int h, int w)
{
    kd_ssa s;
    if (kd_ssa_init(&s, B, C, h, w, a->topk, a->gamma)) {
        kd_err_prefix("%s: frame %lld: '%s'", stream, k, a->in);
        return -1;
    }
    size_t n = (size_t)h * w, kept = (size_t)B * n * s.k;
    if (grow((void **)&a->ws, &a->ws_cap, kd_ssa_workspace(&s), sizeof(float)) ||
        grow((void **)&a->wt, &a->wt_cap, kept, sizeof(float)) || grow((void **)&a->idx, &a->idx_cap, kept, sizeof(int32_t)) ||
        grow((void **)&a->norms, &a->norms_cap, (size_t)B * 2 * n, sizeof(float)))
        return -1;
    int64_t d4[4] = {B, C, h, w};
    kd_tensor *o = kd_frame_add(f, a->out, KD_F32, 4, d4);
    if (!o)
        return -1;
    const kd_tensor *x = kd_frame_get(f, a->in);
    kd_ssa_forward(&s, x->data, o->data, a->idx, a->wt, a->norms, a->ws);
    return 0;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    agg a = {.wcomp = 2.0f, .gamma = 2.0f};
    const char *out = "-", *o_name = NULL, *ow_name = NULL, *scales = NULL;
    int deflate = 0, have_stride = 0, have_wcomp = 0, have_gamma = 0, opt;
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_IN: a.in = optarg; break;
        case OPT_SCALES: scales = optarg; break;
        case OPT_STRIDE: a.reg.stride = (int)kd_parse_long("--stride", optarg, 1, 4096), have_stride = 1; break;
        case OPT_WCOMP: a.wcomp = (float)kd_parse_double("--weight-comp", optarg, 0, 1e6), have_wcomp = 1; break;
        case OPT_L2: a.l2 = 1; break;
        case OPT_TOPK: a.topk = (int)kd_parse_long("--sparse-topk", optarg, 1, 1 << 20); break;
        case OPT_GAMMA: a.gamma = (float)kd_parse_double("--gamma", optarg, 1e-3, 100), have_gamma = 1; break;
        case OPT_OUT: o_name = optarg; break;
        case OPT_OUTW: ow_name = optarg; break;
        case OPT_DEFLATE: deflate = 1; break;
        case 'o': out = optarg; break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (argc - optind > 1)
        kd_usage("one input stream expected, got %d arguments", argc - optind);
    if (!a.in)
        kd_usage("--in NAME (the map tensor) is required");
    if (!scales == !a.topk)
        kd_usage("give one of --scales (multi-scale regions) or --sparse-topk (sparse aggregation)");
    a.msd = scales != NULL;
    if (a.msd) {
        if (have_gamma)
            kd_usage("--gamma applies to --sparse-topk");
        parse_scales(scales, &a.reg);
        derive(a.in, o_name, KD_NAME_MSD, "--out", a.out);
        derive(a.in, ow_name, KD_NAME_MSDW, "--out-weights", a.outw);
        if (!strcmp(a.out, a.outw))
            kd_usage("--out and --out-weights name the same tensor '%s'", a.out);
    } else {
        if (have_stride || have_wcomp || a.l2 || ow_name)
            kd_usage("--stride, --weight-comp, --l2 and --out-weights apply to --scales");
        derive(a.in, o_name, KD_NAME_SSA, "--out", a.out);
    }
    if (!strcmp(a.out, a.in) || (a.msd && !strcmp(a.outw, a.in)))
        kd_usage("the output '%s' would replace the input", a.in);
    if (kd_gemm_init(std.threads))
        kd_die_err();
    const char *in = optind < argc ? argv[optind] : "-";
    kd_reader *rd;
    kd_writer *wr;
    int rc = kd_filter_open(in, out, deflate, &rd, &wr);
    if (rc == -2)
        kd_usage("%s", kd_err_get());
    if (rc)
        kd_die_err();
    kd_frame f;
    kd_frame_init(&f);
    long long frames = 0, images = 0;
    int64_t due = -1;
    double t0 = kd_now();
    while ((rc = kd_reader_next(rd, &f)) == 1) {
        kd_tensor *t = input(&f, a.in, in, frames);
        if (!t)
            goto fail;
        int B = (int)t->dims[0], C = (int)t->dims[1], h = (int)t->dims[2], w = (int)t->dims[3];
        if (B > 0 && (a.msd ? run_msd(&a, &f, in, frames, B, C, h, w) : run_ssa(&a, &f, in, frames, B, C, h, w)))
            goto fail;
        if (kd_writer_put(wr, &f))
            goto fail;
        images += B;
        if (++frames == 1)
            due = kd_filter_frames_due(&f);
        double dt = kd_now() - t0 + 1e-9;
        kd_progress_run(&std, (long)frames, (long)due, frames / dt, "frames", "%lld images", images);
    }
    if (rc < 0)
        goto fail;
    kd_progress_end(&std);
    kd_reader_close(rd);
    kd_frame_free(&f);
    if (kd_writer_close(wr))
        kd_die_err();
    kd_filter_report(out, frames, images, t0);
    free(a.ws), free(a.wt), free(a.idx), free(a.norms);
    return 0;
fail:
    kd_progress_end(&std);
    kd_writer_abort(wr);
    kd_reader_close(rd);
    kd_frame_free(&f);
    kd_die_err();
}
