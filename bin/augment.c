/* augment — dataset file -> stream of batches of augmented views.
 *
 * Reads /images u8 [N,H,W,C] (and /labels) of a kdpipe dataset file, and for
 * every epoch writes batches of V views of each image, in a per-epoch random
 * order, as kdt frames: view0..view{V-1} f32 [B,C,H,W], index i64 [B],
 * label i32 [B].  All randomness comes from kd_rng keyed by (seed, epoch,
 * image index, view), so the stream does not depend on --threads. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd_png.h"
#include "kd_aug_policy.h"
#include "kd_cli.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_augment.h"
#include "kd_dataset.h"
#include "kd_names.h"
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
    "  --shard R/N         write only rank R's slice of every batch (R of N processes\n"
    "                      of distill-step under mpirun): images R*B/N.. of each\n"
    "                      batch of B; the N shards make up the unsharded stream\n"
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
    "  --progress          the progress line even when stderr is not a terminal\n"
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
    OPT_SHARD,
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
    {"shard", required_argument, 0, OPT_SHARD},
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
static int dump_png(const char *dir, const kd_aug_policy *pol, kd_frame *fr, int V, int B, const int64_t *idx,
                    const uint8_t *images, kd_dataset_file *file, int H, int W, int C)
{
    if (mkdir_p(dir) < 0) {
        kd_err_set("--dump-png %s: cannot create directory: %s", dir, errno ? strerror(errno) : "not a directory");
        return -1;
    }
    const float *views[64];
    char name[KD_NAME_MAX];
    for (int v = 0; v < V; v++) {
        kd_tensor *t = kd_frame_need(fr, kd_name(name, sizeof name, KD_NAME_VIEW, NULL, v), KD_F32, 4);
        if (!t)
            return -1;
        views[v] = t->data;
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
    /* views.png mixes unnormalised originals and normalised views: the
     * views are denormalised into a copy */
    float *den = malloc(sizeof(float) * vsz * rows * V);
    int rc = -1;
    char path[4200];
    if (!orig || !scratch || !row || !tiles || !den) {
        kd_err_set("--dump-png: out of memory");
        goto out;
    }
    static const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    for (int i = 0; i < rows; i++) {
        const uint8_t *src = images ? images + (size_t)idx[i] * H * W * C : row;
        if (!images && kd_dataset_read_rows(file, idx[i], 1, row, NULL) < 0)
            goto out;
        kd_rng r = kd_rng_make(0, 0, 0);
        kd_aug_view(&plain, &r, src, H, W, C, orig + (size_t)i * vsz, scratch);
    }
    for (int i = 0; i < rows; i++) {
        tiles[i * cols] = orig + (size_t)i * vsz;
        for (int v = 0; v < V; v++) {
            float *d = den + ((size_t)i * V + v) * vsz;
            kd_aug_denormalize(pol, views[v] + (size_t)i * vsz, d, pol->oh * pol->ow);
            tiles[i * cols + 1 + v] = d;
        }
    }
    snprintf(path, sizeof path, "%s/views.png", dir);
    rc = kd_png_grid(path, tiles, rows * cols, cols, pol->oc, pol->oh, pol->ow, scale, zero, one);
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
    free(den);
    return rc;
}

/* Loads the first n images into memory unless that takes more than max_mem
 * bytes (NULL then: the augmenter reads them from the file). */
static uint8_t *load_images(kd_dataset_file *f, const kd_dataset_info *di, int64_t n, double max_mem, int quiet)
{
    const size_t isz = (size_t)di->h * di->w * di->c;
    if ((double)isz * n > max_mem)
        return NULL;
    /* huge pages where the kernel offers them: fewer page faults while
     * loading, fewer TLB misses while cropping at random */
    size_t bytes = (isz * (size_t)n + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    uint8_t *images = aligned_alloc(2u << 20, bytes);
    if (!images) {
        if (!quiet)
            kd_warn("not enough memory to hold %lld images; reading them from the file", (long long)n);
        return NULL;
    }
    if (madvise(images, bytes, MADV_HUGEPAGE) < 0) {
        /* advice only: without huge pages the load is merely slower */
    }
    const int64_t chunk = 4096;
    for (int64_t s = 0; s < n; s += chunk)
        if (kd_dataset_read_rows(f, s, n - s < chunk ? n - s : chunk, images + (size_t)s * isz, NULL) < 0)
            kd_die_err();
    return images;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    const char *out_path = "-", *png_dir = NULL, *policy_name = "mocov2";
    int views = -1, batch = 256, shuffle = 1, drop_last = 0, deflate = 0, oh = 0, ow = 0, oc = 0;
    long epochs = 1;
    int shard_r = 0, shard_n = 0; /* --shard R/N; 0: the whole batch */
    int64_t limit = -1, start_epoch = 0;
    double max_mem = 2048.0 * (1 << 20);
    kd_aug_overrides ov;
    kd_aug_overrides_init(&ov);
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
        case OPT_SHARD: {
            char tail;
            if (sscanf(optarg, "%d/%d%c", &shard_r, &shard_n, &tail) != 2 || shard_n < 1 || shard_r < 0 ||
                shard_r >= shard_n)
                kd_usage("--shard: '%s' is not R/N with 0 <= R < N", optarg);
            break;
        }
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
        case OPT_MEAN: ov.norm.nmean = parse_list("--mean", optarg, ov.norm.mean, 1, 3); break;
        case OPT_STD: ov.norm.nstd = parse_list("--std", optarg, ov.norm.std, 1, 3); break;
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
    kd_dataset_info di;
    char spool[4200];
    /* HDF5 seeks, so standard input is copied to a temporary file first;
     * the name goes as soon as the file is open */
    if (!strcmp(ds_path, "-") && kd_file_spool_stdin(spool, sizeof spool))
        kd_die_err();
    kd_dataset_file *df = kd_dataset_open(strcmp(ds_path, "-") ? ds_path : spool, &di);
    if (!strcmp(ds_path, "-"))
        kd_file_tmp_remove(spool);
    if (!df)
        kd_die_err();
    const int H = di.h, W = di.w, C = di.c;
    if (C != 1 && C != 3)
        kd_die(KD_EXIT_FAIL, "%s: /images has %d channels; augment handles 1 (gray) or 3 (RGB)", ds_path, C);
    int64_t N = limit > 0 && limit < di.n ? limit : di.n;
    if (drop_last && batch > N)
        kd_die(KD_EXIT_FAIL, "--batch %d is larger than the %lld images and --drop-last leaves nothing", batch,
               (long long)N);
    /* equal shards: every rank takes the same number of steps and its
     * gradient the same weight (kd_train.h) */
    if (shard_n > 1 && batch % shard_n)
        kd_usage("--shard %d/%d: --batch %d is not a multiple of %d", shard_r, shard_n, batch, shard_n);
    if (shard_n > 1 && !drop_last && (N % batch) % shard_n)
        kd_die(KD_EXIT_FAIL, "--shard %d/%d: the last batch of each epoch has %lld images, which %d ranks cannot "
               "share equally: --drop-last, or a --limit that is a multiple of %d", shard_r, shard_n,
               (long long)(N % batch), shard_n, shard_n);
    int32_t *labels = NULL;
    if (di.has_labels) {
        labels = malloc(sizeof(int32_t) * (size_t)N);
        if (!labels)
            kd_die(KD_EXIT_FAIL, "out of memory");
        if (kd_dataset_read_rows(df, 0, N, NULL, labels) < 0)
            kd_die_err();
    }
    uint8_t *images = load_images(df, &di, N, max_mem, std.quiet);

    /* ---- policy ---- */
    kd_aug_policy pol;
    kd_aug_policy_init(&pol, kind, oh ? oh : H, ow ? ow : W, oc ? oc : C);
    int nrc = kd_aug_policy_apply_overrides(&pol, &ov, &di);
    if (nrc == -2)
        kd_usage("%s", kd_err_get());
    if (nrc)
        kd_die_err();
    if (kd_aug_policy_check(&pol, H, W, C) < 0)
        kd_usage("%s", kd_err_get());

    /* ---- output ---- */
    const int64_t nb = drop_last ? N / batch : (N + batch - 1) / batch;
    kd_augmenter_opts ao = {.pol = &pol, .h = H, .w = W, .c = C, .images = images, .file = df, .labels = labels,
                            .views = views, .threads = kd_cli_threads(&std), .seed = std.seed,
                            .epochs = start_epoch + epochs, .batches = nb};
    kd_augmenter *aug = kd_augmenter_new(&ao);
    if (!aug)
        kd_die_err();
    kd_writer *wr = kd_writer_open(out_path, deflate ? KD_W_DEFLATE : 0);
    if (!wr)
        kd_die_err();
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)N);
    if (!perm)
        kd_die(KD_EXIT_FAIL, "out of memory");
    kd_frame fr;
    kd_frame_init(&fr);
    int64_t frames = 0, nviews = 0, done = 0;
    const int64_t total = (drop_last ? nb * batch : N) * epochs / (shard_n ? shard_n : 1); /* images this run augments */
    double t0 = kd_now();
    for (int64_t e = start_epoch; e < start_epoch + epochs; e++) {
        kd_augment_order(std.seed, e, shuffle, perm, N);
        for (int64_t bi = 0; bi < nb; bi++) {
            int64_t s = bi * batch;
            int b = (int)(N - s < batch ? N - s : batch);
            if (shard_n)
                s += (int64_t)shard_r * (b / shard_n), b /= shard_n;
            if (kd_augmenter_frame(aug, &fr, e, bi, perm + s, b) < 0 ||
                (shard_n && kd_frame_meta_set(&fr, KD_META_SHARD, "%d/%d", shard_r, shard_n)) ||
                (png_dir && frames == 0 && dump_png(png_dir, &pol, &fr, views, b, perm + s, images, df, H, W, C) < 0)) {
                kd_writer_abort(wr);
                kd_die_err();
            }
            if (kd_writer_put(wr, &fr) < 0)
                kd_writer_fail(wr);
            frames++;
            nviews += (int64_t)b * views;
            done += b;
            kd_progress_run(&std, (long)done, (long)total, done / (kd_now() - t0 + 1e-9), "images",
                            "epoch %lld/%lld batch %lld/%lld", (long long)e + 1, (long long)(start_epoch + epochs),
                            (long long)bi + 1, (long long)nb);
        }
    }
    kd_progress_end(&std);
    if (kd_writer_close(wr) < 0)
        kd_writer_fail(NULL);
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
    kd_augmenter_free(aug);
    free(perm);
    free(images);
    free(labels);
    kd_dataset_close(df);
    return KD_EXIT_OK;
}
