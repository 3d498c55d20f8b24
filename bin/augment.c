/* augment — dataset file -> stream of batches of augmented views.
 *
 * Reads /images u8 [N,H,W,C] (and /labels) of a kdpipe dataset file, and for
 * every epoch writes batches of V views of each image, in a per-epoch random
 * order, as kdt frames: view0..view{V-1} f32 [B,C,H,W], index i64 [B],
 * label i32 [B].  All randomness comes from kd_rng keyed by (seed, epoch,
 * image index, view), so the stream does not depend on --threads. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd_png.h"
#include "kd_aug_policy.h"
#include "kd_cli.h"
#include "kd_err.h"
#include "kd_h5.h"
#include "kd_rng.h"
#include "kd_stream.h"

static const char help[] =
    "Usage: augment [OPTION]... DATASET.h5 [-o STREAM]\n"
    "Turn a dataset file into a stream of batches of augmented views.\n"
    "\n"
    "  --policy NAME       mocov2 (default), simclr, crop-flip, eval or none\n"
    "  --views V           views per image (default 2; 1 for eval/none)\n"
    "  --batch B           images per frame (default 256)\n"
    "  --epochs E          epochs to write (default 1)\n"
    "  --start-epoch E0    number of the first epoch (default 0; for resuming)\n"
    "  --size HxW          output size (default: the images' size)\n"
    "  --channels 1|3      output channels (default: the images')\n"
    "  --no-shuffle        dataset order instead of a random permutation\n"
    "  --drop-last         leave out the last incomplete batch of each epoch\n"
    "  --limit N           use only the first N images\n"
    "  --deflate           compress frames (for streams written to disk)\n"
    "  --max-memory MB     hold the images in memory up to this size (2048)\n"
    "  --dump-png DIR      write PNG grids of the views of the first batch\n"
    "  -o, --output FILE   the stream ('-' or absent: stdout, not a terminal)\n"
    "Policy parameters (override the policy's defaults):\n"
    "  --crop-scale LO,HI  RandomResizedCrop area fraction (mocov2 0.2,1)\n"
    "  --crop-ratio LO,HI  RandomResizedCrop aspect ratio (0.75,1.333)\n"
    "  --jitter B,C,S,H    ColorJitter strengths (mocov2 0.4,0.4,0.4,0.1)\n"
    "  --jitter-p P        probability of colour jitter (mocov2 0.8)\n"
    "  --gray-p P          probability of grayscale (mocov2 0.2)\n"
    "  --blur-sigma LO,HI  Gaussian blur sigma range (0.1,2)\n"
    "  --blur-p P          probability of blur (mocov2 0.5)\n"
    "  --flip-p P          probability of horizontal flip (0.5)\n"
    "  --pad N             crop-flip zero padding (4)\n"
    "  --resize S          eval: shorter side before the centre crop\n"
    "  --mean M[,M,M]      normalisation mean (default: the dataset's)\n"
    "  --std S[,S,S]       normalisation std (default: the dataset's)\n"
    "  --no-normalize      leave pixels in [0,1]\n"
    "Common options:\n"
    "  --seed S            random seed (default 0)\n"
    "  --threads N         worker threads (default: all cores)\n"
    "  --quiet             no progress line\n"
    "  -h, --help          this help;  --version  version\n"
    "See augment(1).\n";

enum {
    OPT_POLICY = KD_OPT_PROG,
    OPT_VIEWS,
    OPT_BATCH,
    OPT_EPOCHS,
    OPT_START_EPOCH,
    OPT_SIZE,
    OPT_CHANNELS,
    OPT_NO_SHUFFLE,
    OPT_DROP_LAST,
    OPT_LIMIT,
    OPT_DEFLATE,
    OPT_DUMP_PNG,
    OPT_CROP_SCALE,
    OPT_CROP_RATIO,
    OPT_JITTER,
    OPT_JITTER_P,
    OPT_GRAY_P,
    OPT_BLUR_SIGMA,
    OPT_BLUR_P,
    OPT_FLIP_P,
    OPT_PAD,
    OPT_RESIZE,
    OPT_MEAN,
    OPT_STD,
    OPT_NO_NORMALIZE,
    OPT_MAX_MEMORY,
};

static const struct option longopts[] = {
    {"policy", required_argument, 0, OPT_POLICY},
    {"views", required_argument, 0, OPT_VIEWS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"start-epoch", required_argument, 0, OPT_START_EPOCH},
    {"size", required_argument, 0, OPT_SIZE},
    {"channels", required_argument, 0, OPT_CHANNELS},
    {"no-shuffle", no_argument, 0, OPT_NO_SHUFFLE},
    {"drop-last", no_argument, 0, OPT_DROP_LAST},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"deflate", no_argument, 0, OPT_DEFLATE},
    {"dump-png", required_argument, 0, OPT_DUMP_PNG},
    {"output", required_argument, 0, 'o'},
    {"crop-scale", required_argument, 0, OPT_CROP_SCALE},
    {"crop-ratio", required_argument, 0, OPT_CROP_RATIO},
    {"jitter", required_argument, 0, OPT_JITTER},
    {"jitter-p", required_argument, 0, OPT_JITTER_P},
    {"gray-p", required_argument, 0, OPT_GRAY_P},
    {"blur-sigma", required_argument, 0, OPT_BLUR_SIGMA},
    {"blur-p", required_argument, 0, OPT_BLUR_P},
    {"flip-p", required_argument, 0, OPT_FLIP_P},
    {"pad", required_argument, 0, OPT_PAD},
    {"resize", required_argument, 0, OPT_RESIZE},
    {"mean", required_argument, 0, OPT_MEAN},
    {"std", required_argument, 0, OPT_STD},
    {"no-normalize", no_argument, 0, OPT_NO_NORMALIZE},
    {"max-memory", required_argument, 0, OPT_MAX_MEMORY},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0},
};

/* A comma-separated list of exactly n (or, when n_alt > 0, n_alt) numbers. */
static int parse_list(const char *opt, const char *s, float *v, int n, int n_alt)
{
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || k >= (n > n_alt ? n : n_alt))
            kd_usage("%s: '%s' is not a list of %d numbers", opt, s, n);
        v[k++] = (float)x;
        if (*end == ',')
            end++;
        else if (*end)
            kd_usage("%s: '%s' is not a list of %d numbers", opt, s, n);
        p = end;
    }
    if (k != n && k != n_alt)
        kd_usage("%s: '%s' is not a list of %d numbers", opt, s, n);
    return k;
}

/* Options as given, applied over the policy's defaults once the dataset's
 * shape is known. */
typedef struct {
    int has_scale, has_ratio, has_jitter, has_sigma, has_pad, has_resize;
    float scale[2], ratio[2], jitter[4], sigma[2];
    float jitter_p, gray_p, blur_p, flip_p; /* < 0: not given */
    int pad, resize;
    int nmean, nstd;
    float mean[3], std[3];
    int no_normalize;
} overrides;

typedef struct {
    const kd_aug_policy *pol;
    const uint8_t *images;       /* all images in memory, or NULL */
    kd_h5 *h5;                   /* else read rows from here */
    int H, W, C, V;
    uint64_t seed, epoch;
    const int64_t *idx;          /* [b] dataset indices of this batch */
    float **views;               /* V pointers to [B,oc,oh,ow] */
    int b;                       /* items in this batch */
    int k0, k1;                  /* this worker's share of b*V */
    float *scratch;
    uint8_t *row;                /* one image when reading from the file */
    int rc;
} work;

static void *worker(void *arg)
{
    work *w = arg;
    const kd_aug_policy *p = w->pol;
    const size_t vsz = (size_t)p->oc * p->oh * p->ow;
    const size_t isz = (size_t)w->H * w->W * w->C;
    int64_t have = -1;
    for (int k = w->k0; k < w->k1; k++) {
        int i = k / w->V, v = k % w->V;
        int64_t id = w->idx[i];
        const uint8_t *src;
        if (w->images) {
            src = w->images + (size_t)id * isz;
        } else {
            if (have != id) {
                /* kd_h5 is not thread-safe: the main thread only uses this
                 * path with one worker */
                if (kd_h5_read(w->h5, "images", KD_U8, id, 1, w->row) < 0) {
                    w->rc = -1;
                    return NULL;
                }
                have = id;
            }
            src = w->row;
        }
        kd_rng base = kd_rng_make(w->seed, w->epoch, (uint64_t)id);
        kd_rng r = kd_rng_make(base.key, (uint64_t)v, 0x61756776u /* "augv" */);
        kd_aug_view(p, &r, src, w->H, w->W, w->C, w->views[v] + (size_t)i * vsz, w->scratch);
    }
    w->rc = 0;
    return NULL;
}

static int mkdir_p(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -1;
    return mkdir(dir, 0777);
}

/* PNG grids of the first batch: views.png (rows: images; columns: the image
 * resized to the output size, then the views) and viewK.png (all images of
 * view K). */
static int dump_png(const char *dir, const kd_aug_policy *pol, float **views, int V, int B, const int64_t *idx,
                    const uint8_t *images, kd_h5 *h5, int H, int W, int C)
{
    if (mkdir_p(dir) < 0) {
        kd_err_set("--dump-png %s: cannot create directory: %s", dir, errno ? strerror(errno) : "not a directory");
        return -1;
    }
    const size_t vsz = (size_t)pol->oc * pol->oh * pol->ow;
    int rows = B < 16 ? B : 16, cols = V + 1;
    int scale = pol->oh < 64 ? (64 + pol->oh - 1) / pol->oh : 1;
    kd_aug_policy plain;
    kd_aug_policy_init(&plain, KD_AUG_NONE, pol->oh, pol->ow, pol->oc);
    plain.normalize = 0;
    float *orig = malloc(sizeof(float) * vsz * rows);
    float *scratch = malloc(sizeof(float) * kd_aug_scratch_floats(&plain, H, W));
    uint8_t *row = malloc((size_t)H * W * C);
    const float **tiles = malloc(sizeof(float *) * (size_t)(rows * cols > B ? rows * cols : B));
    int rc = -1;
    char path[4200];
    if (!orig || !scratch || !row || !tiles) {
        kd_err_set("--dump-png: out of memory");
        goto out;
    }
    static const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    for (int i = 0; i < rows; i++) {
        const uint8_t *src = images ? images + (size_t)idx[i] * H * W * C : row;
        if (!images && kd_h5_read(h5, "images", KD_U8, idx[i], 1, row) < 0)
            goto out;
        kd_rng r = kd_rng_make(0, 0, 0);
        kd_aug_view(&plain, &r, src, H, W, C, orig + (size_t)i * vsz, scratch);
    }
    /* views.png mixes unnormalised originals and normalised views: undo the
     * normalisation of the views into a copy */
    float *den = malloc(sizeof(float) * vsz * rows * V);
    if (!den) {
        kd_err_set("--dump-png: out of memory");
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        tiles[i * cols] = orig + (size_t)i * vsz;
        for (int v = 0; v < V; v++) {
            float *d = den + ((size_t)i * V + v) * vsz;
            const float *s = views[v] + (size_t)i * vsz;
            int n = pol->oh * pol->ow;
            for (int c = 0; c < pol->oc; c++)
                for (int k = 0; k < n; k++)
                    d[c * n + k] = pol->normalize ? s[c * n + k] * pol->std[c] + pol->mean[c] : s[c * n + k];
            tiles[i * cols + 1 + v] = d;
        }
    }
    snprintf(path, sizeof path, "%s/views.png", dir);
    rc = kd_png_grid(path, tiles, rows * cols, cols, pol->oc, pol->oh, pol->ow, scale, zero, one);
    free(den);
    for (int v = 0; rc == 0 && v < V; v++) {
        int n = B < 256 ? B : 256, gc = 1;
        while (gc * gc < n)
            gc++;
        for (int i = 0; i < n; i++)
            tiles[i] = views[v] + (size_t)i * vsz;
        snprintf(path, sizeof path, "%s/view%d.png", dir, v);
        rc = kd_png_grid(path, tiles, n, gc, pol->oc, pol->oh, pol->ow, scale,
                             pol->normalize ? pol->mean : zero, pol->normalize ? pol->std : one);
    }
out:
    free(orig);
    free(scratch);
    free(row);
    free(tiles);
    return rc;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(argv[0], help, &std);
    const char *out_path = "-", *png_dir = NULL, *policy_name = "mocov2";
    int views = -1, batch = 256, shuffle = 1, drop_last = 0, deflate = 0, oh = 0, ow = 0, oc = 0;
    long epochs = 1;
    int64_t limit = -1, start_epoch = 0;
    double max_mem = 2048.0 * (1 << 20);
    overrides ov;
    memset(&ov, 0, sizeof ov);
    ov.jitter_p = ov.gray_p = ov.blur_p = ov.flip_p = -1.0f;
    int opt;
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_POLICY:
            if (kd_aug_kind_parse(optarg) < 0)
                kd_usage("--policy: unknown policy '%s' (mocov2, simclr, crop-flip, eval, none)", optarg);
            policy_name = optarg;
            break;
        case OPT_VIEWS: views = (int)kd_parse_long("--views", optarg, 1, 64); break;
        case OPT_BATCH: batch = (int)kd_parse_long("--batch", optarg, 1, 1 << 20); break;
        case OPT_EPOCHS: epochs = kd_parse_long("--epochs", optarg, 1, 1000000); break;
        case OPT_START_EPOCH: start_epoch = kd_parse_long("--start-epoch", optarg, 0, 1000000000); break;
        case OPT_SIZE:
            kd_parse_size("--size", optarg, &oh, &ow);
            if (oh > 4096 || ow > 4096)
                kd_usage("--size: %dx%d is larger than 4096x4096", oh, ow);
            break;
        case OPT_CHANNELS:
            oc = (int)kd_parse_long("--channels", optarg, 1, 3);
            if (oc == 2)
                kd_usage("--channels: 1 or 3");
            break;
        case OPT_NO_SHUFFLE: shuffle = 0; break;
        case OPT_DROP_LAST: drop_last = 1; break;
        case OPT_LIMIT: limit = kd_parse_long("--limit", optarg, 1, (long)1 << 40); break;
        case OPT_DEFLATE: deflate = 1; break;
        case OPT_DUMP_PNG: png_dir = optarg; break;
        case 'o': out_path = optarg; break;
        case OPT_CROP_SCALE: ov.has_scale = 1, parse_list("--crop-scale", optarg, ov.scale, 2, 0); break;
        case OPT_CROP_RATIO: ov.has_ratio = 1, parse_list("--crop-ratio", optarg, ov.ratio, 2, 0); break;
        case OPT_JITTER: ov.has_jitter = 1, parse_list("--jitter", optarg, ov.jitter, 4, 0); break;
        case OPT_BLUR_SIGMA: ov.has_sigma = 1, parse_list("--blur-sigma", optarg, ov.sigma, 2, 0); break;
        case OPT_JITTER_P: ov.jitter_p = (float)kd_parse_double("--jitter-p", optarg, 0, 1); break;
        case OPT_GRAY_P: ov.gray_p = (float)kd_parse_double("--gray-p", optarg, 0, 1); break;
        case OPT_BLUR_P: ov.blur_p = (float)kd_parse_double("--blur-p", optarg, 0, 1); break;
        case OPT_FLIP_P: ov.flip_p = (float)kd_parse_double("--flip-p", optarg, 0, 1); break;
        case OPT_PAD: ov.has_pad = 1, ov.pad = (int)kd_parse_long("--pad", optarg, 0, 4096); break;
        case OPT_RESIZE: ov.has_resize = 1, ov.resize = (int)kd_parse_long("--resize", optarg, 1, 8192); break;
        case OPT_MEAN: ov.nmean = parse_list("--mean", optarg, ov.mean, 1, 3); break;
        case OPT_STD: ov.nstd = parse_list("--std", optarg, ov.std, 1, 3); break;
        case OPT_NO_NORMALIZE: ov.no_normalize = 1; break;
        case OPT_MAX_MEMORY: max_mem = kd_parse_double("--max-memory", optarg, 0, 1e9) * (1 << 20); break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (optind >= argc)
        kd_usage("missing DATASET.h5");
    if (argc - optind > 1)
        kd_usage("one dataset file expected, got %d arguments", argc - optind);
    const char *ds_path = argv[optind];
    kd_aug_kind kind = (kd_aug_kind)kd_aug_kind_parse(policy_name);
    if (views < 0)
        views = (kind == KD_AUG_EVAL || kind == KD_AUG_NONE) ? 1 : 2;
    if (strcmp(out_path, "-") == 0 && isatty(1))
        kd_usage("refusing to write a binary stream to a terminal; use -o FILE or a pipe");

    /* ---- dataset ---- */
    kd_h5 h5;
    if (kd_h5_open(&h5, ds_path, "dataset") < 0)
        kd_die_err();
    int64_t want[4] = {-1, -1, -1, -1}, dims[KD_MAX_RANK];
    kd_dtype idt;
    int irank;
    if (kd_h5_expect(&h5, "images", 4, want, dims) < 0 || kd_h5_info(&h5, "images", &idt, &irank, dims) < 0)
        kd_die_err();
    if (idt != KD_U8)
        kd_die(KD_EXIT_FAIL, "%s: /images is %s; augment reads u8 pixels", ds_path, kd_dtype_name(idt));
    int64_t N = dims[0];
    const int H = (int)dims[1], W = (int)dims[2], C = (int)dims[3];
    if (C != 1 && C != 3)
        kd_die(KD_EXIT_FAIL, "%s: /images has %d channels; augment handles 1 (gray) or 3 (RGB)", ds_path, C);
    if (H < 1 || W < 1 || H > 16384 || W > 16384)
        kd_die(KD_EXIT_FAIL, "%s: /images of %dx%d pixels", ds_path, H, W);
    if (limit > 0 && limit < N)
        N = limit;
    if (N < 1)
        kd_die(KD_EXIT_FAIL, "%s: no images", ds_path);
    if (drop_last && batch > N)
        kd_die(KD_EXIT_FAIL, "--batch %d is larger than the %lld images and --drop-last leaves nothing", batch,
               (long long)N);
    int has_labels = kd_h5_exists(&h5, "labels") > 0;
    int32_t *labels = NULL;
    if (has_labels) {
        int64_t lw[1] = {-1}, ld[KD_MAX_RANK];
        if (kd_h5_expect(&h5, "labels", 1, lw, ld) < 0)
            kd_die_err();
        if (ld[0] < N)
            kd_die(KD_EXIT_FAIL, "%s: /labels has %lld entries for %lld images", ds_path, (long long)ld[0],
                   (long long)N);
        labels = malloc(sizeof(int32_t) * (size_t)N);
        if (!labels)
            kd_die(KD_EXIT_FAIL, "out of memory");
        if (kd_h5_read(&h5, "labels", KD_I32, 0, N, labels) < 0)
            kd_die_err();
    }
    /* Hold the images in memory unless that would take more than
     * --max-memory; larger datasets are read one image at a time (single
     * worker). */
    const size_t isz = (size_t)H * W * C;
    uint8_t *images = NULL;
    if ((double)isz * N <= max_mem) {
        /* huge pages where the kernel offers them: fewer page faults while
         * loading, fewer TLB misses while cropping at random */
        size_t bytes = (isz * (size_t)N + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
        images = aligned_alloc(2u << 20, bytes);
        if (images)
            madvise(images, bytes, MADV_HUGEPAGE);
        else if (!std.quiet)
            kd_warn("not enough memory to hold %lld images; reading them from the file", (long long)N);
        const int64_t chunk = 4096;
        for (int64_t s = 0; images && s < N; s += chunk)
            if (kd_h5_read(&h5, "images", KD_U8, s, N - s < chunk ? N - s : chunk, images + (size_t)s * isz) < 0)
                kd_die_err();
    }

    /* ---- policy ---- */
    kd_aug_policy pol;
    kd_aug_policy_init(&pol, kind, oh ? oh : H, ow ? ow : W, oc ? oc : C);
    if (ov.has_scale) {
        memcpy(pol.scale, ov.scale, sizeof pol.scale);
        pol.rrc = 1;
    }
    if (ov.has_ratio)
        memcpy(pol.ratio, ov.ratio, sizeof pol.ratio);
    if (ov.has_jitter) {
        memcpy(pol.jitter, ov.jitter, sizeof pol.jitter);
        if (kind != KD_AUG_MOCOV2 && kind != KD_AUG_SIMCLR && ov.jitter_p < 0)
            pol.jitter_p = 1.0f;
    }
    if (ov.has_sigma)
        memcpy(pol.sigma, ov.sigma, sizeof pol.sigma);
    if (ov.jitter_p >= 0)
        pol.jitter_p = ov.jitter_p;
    if (ov.gray_p >= 0)
        pol.gray_p = ov.gray_p;
    if (ov.blur_p >= 0)
        pol.blur_p = ov.blur_p;
    if (ov.flip_p >= 0)
        pol.flip_p = ov.flip_p;
    if (ov.has_pad)
        pol.pad = ov.pad;
    if (ov.has_resize)
        pol.resize = ov.resize;
    pol.normalize = !ov.no_normalize;
    if (pol.normalize) {
        float m[3] = {0, 0, 0}, s[3] = {1, 1, 1};
        int nm = kd_h5_attr_has(&h5, NULL, "mean") ? kd_h5_attr_get_f32v(&h5, NULL, "mean", m, 3) : 0;
        int ns = kd_h5_attr_has(&h5, NULL, "std") ? kd_h5_attr_get_f32v(&h5, NULL, "std", s, 3) : 0;
        if ((nm && nm != C) || (ns && ns != C))
            kd_die(KD_EXIT_FAIL, "%s: mean/std attributes have %d/%d values for %d channels", ds_path, nm, ns, C);
        if ((!nm || !ns) && (!ov.nmean || !ov.nstd))
            kd_die(KD_EXIT_FAIL, "%s: no mean/std attributes; give --mean and --std or --no-normalize", ds_path);
        if (C == 1 && pol.oc == 3) {
            m[1] = m[2] = m[0];
            s[1] = s[2] = s[0];
        } else if (C == 3 && pol.oc == 1) {
            /* luma of the channel statistics: exact for the mean, an
             * approximation for the std */
            m[0] = 0.2989f * m[0] + 0.587f * m[1] + 0.114f * m[2];
            s[0] = 0.2989f * s[0] + 0.587f * s[1] + 0.114f * s[2];
        }
        for (int c = 0; c < pol.oc; c++) {
            pol.mean[c] = ov.nmean ? ov.mean[ov.nmean == 1 ? 0 : c] : m[c];
            pol.std[c] = ov.nstd ? ov.std[ov.nstd == 1 ? 0 : c] : s[c];
        }
        if ((ov.nmean && ov.nmean != 1 && ov.nmean != pol.oc) || (ov.nstd && ov.nstd != 1 && ov.nstd != pol.oc))
            kd_usage("--mean/--std: give 1 or %d values", pol.oc);
    }
    if (kd_aug_policy_check(&pol, H, W, C) < 0)
        kd_usage("%s", kd_err_get());

    /* ---- output ---- */
    int nthreads = images ? kd_cli_threads(&std) : 1;
    kd_writer *wr = kd_writer_open(out_path, deflate ? KD_W_DEFLATE : 0);
    if (!wr)
        kd_die_err();
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)N);
    work *ws = calloc((size_t)nthreads, sizeof(work));
    pthread_t *tids = calloc((size_t)nthreads, sizeof(pthread_t));
    float *vptr[64];
    if (!perm || !ws || !tids)
        kd_die(KD_EXIT_FAIL, "out of memory");
    for (int t = 0; t < nthreads; t++) {
        ws[t].scratch = malloc(sizeof(float) * kd_aug_scratch_floats(&pol, H, W));
        ws[t].row = images ? NULL : malloc(isz);
        if (!ws[t].scratch || (!images && !ws[t].row))
            kd_die(KD_EXIT_FAIL, "out of memory");
    }
    kd_frame fr;
    kd_frame_init(&fr);
    const int64_t nb = drop_last ? N / batch : (N + batch - 1) / batch;
    int64_t frames = 0, nviews = 0;
    double t0 = kd_now();
    for (int64_t e = start_epoch; e < start_epoch + epochs; e++) {
        if (shuffle) {
            kd_rng pr = kd_rng_make(std.seed, (uint64_t)e, UINT64_MAX /* not an image index */);
            kd_rng_permute(&pr, perm, N);
        } else {
            for (int64_t i = 0; i < N; i++)
                perm[i] = i;
        }
        for (int64_t bi = 0; bi < nb; bi++) {
            int64_t s = bi * batch;
            int b = (int)(N - s < batch ? N - s : batch);
            kd_frame_clear(&fr);
            int64_t vd[4] = {b, pol.oc, pol.oh, pol.ow};
            char name[16];
            for (int v = 0; v < views; v++) {
                snprintf(name, sizeof name, "view%d", v);
                kd_tensor *t = kd_frame_add(&fr, name, KD_F32, 4, vd);
                if (!t)
                    kd_die_err();
                vptr[v] = t->data;
            }
            int64_t bd[1] = {b};
            kd_tensor *ti = kd_frame_add(&fr, "index", KD_I64, 1, bd);
            if (!ti)
                kd_die_err();
            memcpy(ti->data, perm + s, sizeof(int64_t) * (size_t)b);
            if (labels) {
                kd_tensor *tl = kd_frame_add(&fr, "label", KD_I32, 1, bd);
                if (!tl)
                    kd_die_err();
                int32_t *l = tl->data;
                for (int i = 0; i < b; i++)
                    l[i] = labels[perm[s + i]];
            }
            kd_frame_meta_set(&fr, "epoch", "%lld", (long long)e);
            kd_frame_meta_set(&fr, "step", "%lld", (long long)(e * nb + bi));
            kd_frame_meta_set(&fr, "batch", "%lld", (long long)bi);
            kd_frame_meta_set(&fr, "batches", "%lld", (long long)nb);
            kd_frame_meta_set(&fr, "seed", "%llu", (unsigned long long)std.seed);
            kd_frame_meta_set(&fr, "policy", "%s", kd_aug_kind_name(kind));
            int K = b * views, T = nthreads < K ? nthreads : K;
            for (int t = 0; t < T; t++) {
                work *w = &ws[t];
                w->pol = &pol;
                w->images = images;
                w->h5 = &h5;
                w->H = H, w->W = W, w->C = C, w->V = views;
                w->seed = std.seed;
                w->epoch = (uint64_t)e;
                w->idx = perm + s;
                w->views = vptr;
                w->b = b;
                w->k0 = (int)((int64_t)K * t / T);
                w->k1 = (int)((int64_t)K * (t + 1) / T);
                if (t > 0 && pthread_create(&tids[t], NULL, worker, w) != 0)
                    kd_die(KD_EXIT_FAIL, "cannot start a thread");
            }
            worker(&ws[0]);
            int bad = ws[0].rc;
            for (int t = 1; t < T; t++) {
                pthread_join(tids[t], NULL);
                bad |= ws[t].rc;
            }
            if (bad)
                kd_die_err();
            if (png_dir && frames == 0 &&
                dump_png(png_dir, &pol, vptr, views, b, perm + s, images, &h5, H, W, C) < 0) {
                kd_writer_abort(wr);
                kd_die_err();
            }
            if (kd_writer_put(wr, &fr) < 0) {
                if (errno == EPIPE) { /* the consumer has gone: end quietly, as filters do */
                    kd_writer_abort(wr);
                    exit(KD_EXIT_OK);
                }
                kd_writer_abort(wr);
                kd_die_err();
            }
            frames++;
            nviews += (int64_t)b * views;
            kd_progress(&std, "epoch %lld batch %lld/%lld", (long long)e, (long long)bi + 1, (long long)nb);
        }
    }
    kd_progress_end(&std);
    if (kd_writer_close(wr) < 0) {
        if (errno == EPIPE)
            exit(KD_EXIT_OK);
        kd_die_err();
    }
    double dt = kd_now() - t0;
    if (strcmp(out_path, "-") != 0) {
        kd_json j;
        kd_json_begin(&j, stdout);
        kd_json_str(&j, "program", "augment");
        kd_json_str(&j, "output", out_path);
        kd_json_str(&j, "policy", kd_aug_kind_name(kind));
        kd_json_int(&j, "epochs", epochs);
        kd_json_int(&j, "frames", frames);
        kd_json_int(&j, "images", N);
        kd_json_int(&j, "views", nviews);
        kd_json_num(&j, "seconds", dt);
        kd_json_num(&j, "views_per_s", dt > 0 ? nviews / dt : 0);
        kd_json_end(&j);
    }
    kd_frame_free(&fr);
    for (int t = 0; t < nthreads; t++) {
        free(ws[t].scratch);
        free(ws[t].row);
    }
    free(ws);
    free(tids);
    free(perm);
    free(images);
    free(labels);
    kd_h5_close(&h5);
    return KD_EXIT_OK;
}
