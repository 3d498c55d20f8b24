/* tensor-info — what is in a kdpipe stream or HDF5 file. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kd_cli.h"
#include "kd_dataset.h"
#include "kd_png.h"
#include "kd_h5.h"
#include "kd_stream.h"

static const char help[] =
    "Usage: tensor-info [OPTION]... [FILE|-]\n"
    "Print every tensor of a kdpipe stream (kdt(5)) or every dataset of a kdpipe\n"
    "HDF5 file (kdpipe-h5(5)): name, dtype, shape, min/mean/max; frame metadata\n"
    "and file attributes.  FILE '-' or absent: a stream on stdin.\n"
    "\n"
    "  --json           one JSON line per tensor instead of a table\n"
    "  --png DIR        write image tensors as PNG grids into DIR: u8 [N,H,W,C]\n"
    "                   datasets such as /images, and float [B,C,H,W] stream\n"
    "                   tensors named view* (scaled per channel min..max); for a\n"
    "                   detection dataset also boxes.png (images with their\n"
    "                   boxes) and, when it has masks, masks.png\n"
    "  --png-count N    images per grid (default 64)\n"
    "  --png-frames N   stream frames to draw (default 4)\n"
    "  --quiet          no progress line\n"
    "  -h, --help       this help;  --version  version\n"
    "\n"
    "Exit status 0, 1 if the input is unreadable, truncated or corrupt, 2 usage.\n"
    "See tensor-info(1).\n";

enum { OPT_JSON = KD_OPT_PROG, OPT_PNG, OPT_PNG_COUNT, OPT_PNG_FRAMES };
static const struct option longopts[] = {
    {"json", no_argument, 0, OPT_JSON},
    {"png", required_argument, 0, OPT_PNG},
    {"png-count", required_argument, 0, OPT_PNG_COUNT},
    {"png-frames", required_argument, 0, OPT_PNG_FRAMES},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

static int json, png_count = 64, png_frames = 4;
static const char *png_dir;

typedef struct {
    double min, max, sum;
    int64_t n, nonfinite;
} stats;

static void stats_init(stats *s)
{
    s->min = DBL_MAX;
    s->max = -DBL_MAX;
    s->sum = 0;
    s->n = s->nonfinite = 0;
}

static void stats_add(stats *s, kd_dtype dt, const void *data, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (dt) {
        case KD_U8: v = ((const uint8_t *)data)[i]; break;
        case KD_I32: v = ((const int32_t *)data)[i]; break;
        case KD_I64: v = (double)((const int64_t *)data)[i]; break;
        default: v = ((const float *)data)[i];
        }
        if (!isfinite(v)) {
            s->nonfinite++;
            continue;
        }
        if (v < s->min) s->min = v;
        if (v > s->max) s->max = v;
        s->sum += v;
        s->n++;
    }
}

static void shape_str(char *buf, size_t len, int rank, const int64_t *dims)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
}

static void report(long frame, const char *name, kd_dtype dt, int rank, const int64_t *dims, const stats *s)
{
    char shape[256];
    shape_str(shape, sizeof shape, rank, dims);
    int empty = s->n == 0;
    if (json) {
        kd_json j;
        kd_json_begin(&j, stdout);
        if (frame >= 0)
            kd_json_int(&j, "frame", frame);
        kd_json_str(&j, "name", name);
        kd_json_str(&j, "dtype", kd_dtype_name(dt));
        kd_json_raw(&j, "shape", shape);
        kd_json_num(&j, "min", empty ? NAN : s->min);
        kd_json_num(&j, "mean", empty ? NAN : s->sum / (double)s->n);
        kd_json_num(&j, "max", empty ? NAN : s->max);
        if (s->nonfinite)
            kd_json_int(&j, "nonfinite", s->nonfinite);
        kd_json_end(&j);
    } else if (empty)
        printf("  %-24s %-4s %-20s %s\n", name, kd_dtype_name(dt), shape,
               s->nonfinite ? "(no finite value)  NON-FINITE VALUES" : "(empty)");
    else
        printf("  %-24s %-4s %-20s min %-12.6g mean %-12.6g max %-12.6g%s\n", name, kd_dtype_name(dt), shape,
               s->min, s->sum / (double)s->n, s->max, s->nonfinite ? "  NON-FINITE VALUES" : "");
}

static void ensure_dir(const char *dir)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        kd_die(KD_EXIT_FAIL, "--png %s: cannot create directory: %s", dir, strerror(errno));
}

/* A grid of the first images of a float [B,C,H,W] tensor, min..max per channel. */
static void png_float(const kd_tensor *t, const char *path)
{
    int B = (int)t->dims[0], C = (int)t->dims[1], H = (int)t->dims[2], W = (int)t->dims[3];
    if (C != 1 && C != 3)
        return;
    int n = B < png_count ? B : png_count;
    const float *x = t->data;
    float mean[3], scale[3];
    for (int c = 0; c < C; c++) {
        float lo = FLT_MAX, hi = -FLT_MAX;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < H * W; i++) {
                float v = x[((size_t)b * C + c) * H * W + i];
                if (isfinite(v)) {
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
            }
        scale[c] = hi > lo ? 1.0f / (hi - lo) : 1.0f;
        mean[c] = -lo * scale[c];
    }
    const float **tiles = malloc(sizeof *tiles * (size_t)n);
    if (!tiles)
        kd_die(KD_EXIT_FAIL, "out of memory");
    for (int b = 0; b < n; b++)
        tiles[b] = x + (size_t)b * C * H * W;
    int cols = n < 16 ? n : 16, sc = H < 64 ? 2 : 1;
    if (kd_png_grid(path, tiles, n, cols, C, H, W, sc, mean, scale))
        kd_die_err();
    free(tiles);
}

static int stream_info(const char *path)
{
    kd_reader *r = kd_reader_open(path);
    if (!r)
        kd_die_err();
    kd_frame f;
    kd_frame_init(&f);
    long k = 0;
    int rc;
    while ((rc = kd_reader_next(r, &f)) == 1) {
        if (!json) {
            printf("frame %ld:", k);
            for (int i = 0; i < f.nmeta; i++)
                printf(" %s=%s", f.meta[i].key, f.meta[i].val);
            printf("\n");
        }
        for (int i = 0; i < f.n; i++) {
            const kd_tensor *t = &f.t[i];
            stats s;
            stats_init(&s);
            stats_add(&s, t->dtype, t->data, kd_tensor_numel(t));
            report(k, t->name, t->dtype, t->rank, t->dims, &s);
            if (png_dir && k < png_frames && t->dtype == KD_F32 && t->rank == 4 && !strncmp(t->name, "view", 4)) {
                char p[4200];
                snprintf(p, sizeof p, "%s/frame%04ld-%s.png", png_dir, k, t->name);
                png_float(t, p);
            }
        }
        k++;
    }
    kd_frame_free(&f);
    kd_reader_close(r);
    if (rc < 0)
        kd_die_err();
    if (!json)
        printf("%ld frames\n", k);
    return 0;
}

typedef struct {
    kd_h5 *h;
} walk_ctx;

static int h5_dataset(const char *name, void *ctx)
{
    kd_h5 *h = ((walk_ctx *)ctx)->h;
    kd_dtype dt;
    int rank;
    int64_t dims[KD_MAX_RANK];
    if (kd_h5_info(h, name, &dt, &rank, dims))
        kd_die_err();
    int64_t row = 1;
    for (int i = 1; i < rank; i++)
        row *= dims[i];
    int64_t nrows = rank ? dims[0] : 1;
    /* Read in slabs of about 16 MiB so that large files stream. */
    int64_t per = row > 0 ? (16 << 20) / (row * (int64_t)kd_dtype_size(dt)) : 1;
    if (per < 1)
        per = 1;
    void *buf = malloc((size_t)((per < nrows ? per : nrows) * row * (int64_t)kd_dtype_size(dt)) + 8);
    if (!buf)
        kd_die(KD_EXIT_FAIL, "out of memory");
    stats s;
    stats_init(&s);
    for (int64_t r0 = 0; r0 < nrows && row > 0; r0 += per) {
        int64_t cnt = nrows - r0 < per ? nrows - r0 : per;
        if (kd_h5_read(h, name, dt, r0, cnt, buf))
            kd_die_err();
        stats_add(&s, dt, buf, cnt * row);
    }
    report(-1, name, dt, rank, dims, &s);
    free(buf);
    if (png_dir && dt == KD_U8 && rank == 4 && (dims[3] == 1 || dims[3] == 3) && nrows > 0) {
        int n = nrows < png_count ? (int)nrows : png_count, H = (int)dims[1], W = (int)dims[2], C = (int)dims[3];
        uint8_t *px = malloc((size_t)n * H * W * C);
        float *fl = malloc(sizeof(float) * (size_t)n * H * W * C);
        const float **tiles = malloc(sizeof *tiles * (size_t)n);
        if (!px || !fl || !tiles)
            kd_die(KD_EXIT_FAIL, "out of memory");
        if (kd_h5_read(h, name, KD_U8, 0, n, px))
            kd_die_err();
        for (int b = 0; b < n; b++) {
            for (int c = 0; c < C; c++)
                for (int i = 0; i < H * W; i++)
                    fl[((size_t)b * C + c) * H * W + i] = px[((size_t)b * H * W + i) * C + c] / 255.0f;
            tiles[b] = fl + (size_t)b * C * H * W;
        }
        char p[4200], clean[256];
        snprintf(clean, sizeof clean, "%s", name);
        for (char *q = clean; *q; q++)
            if (*q == '/')
                *q = '_';
        snprintf(p, sizeof p, "%s/%s.png", png_dir, clean);
        if (kd_png_grid(p, tiles, n, n < 16 ? n : 16, C, H, W, H < 64 ? 2 : 1, NULL, NULL))
            kd_die_err();
        free(px);
        free(fl);
        free(tiles);
    }
    return 0;
}

/* boxes.png and masks.png of the first images of a detection dataset:
 * read through kd_dataset, so a file whose boxes break the rules is
 * refused as every program refuses it. */
static void png_boxes(const char *path)
{
    kd_dataset_info in;
    kd_dataset_file *f = kd_dataset_open(path, &in);
    if (!f)
        kd_die_err();
    kd_boxes b;
    if (!in.has_boxes || (in.c != 1 && in.c != 3)) {
        kd_dataset_close(f);
        return;
    }
    int n = in.n < png_count ? (int)in.n : png_count;
    size_t px = (size_t)in.h * in.w;
    uint8_t *im = malloc(px * in.c * (size_t)n), *mk = in.has_masks ? malloc(px * (size_t)n) : NULL;
    if (!im || (in.has_masks && !mk))
        kd_die(KD_EXIT_FAIL, "out of memory");
    if (kd_dataset_read_boxes(f, &b) || kd_dataset_read_rows(f, 0, n, im, NULL) ||
        (mk && kd_dataset_read_masks(f, 0, n, mk)))
        kd_die_err();
    char p[4200];
    int scale = in.h < 64 ? 2 : 1;
    snprintf(p, sizeof p, "%s/boxes.png", png_dir);
    if (kd_png_boxes(p, im, NULL, n, in.h, in.w, in.c, b.boxes, b.labels, b.offsets, scale))
        kd_die_err();
    snprintf(p, sizeof p, "%s/masks.png", png_dir);
    if (mk && kd_png_boxes(p, im, mk, n, in.h, in.w, in.c, b.boxes, b.labels, b.offsets, scale))
        kd_die_err();
    free(im), free(mk);
    kd_boxes_free(&b);
    kd_dataset_close(f);
}

static int h5_info(const char *path)
{
    kd_h5 h;
    if (kd_h5_open(&h, path, NULL))
        kd_die_err();
    if (!json) {
        int64_t fmt = 0;
        kd_h5_attr_get_i64(&h, NULL, "kdpipe_format", &fmt);
        printf("%s: kdpipe %s file, format %lld\n", path, kd_h5_kind(&h), (long long)fmt);
        static const char *sattrs[] = {"arch", "source", "model", "dataset", "layer", "scenes"};
        char buf[1024];
        for (size_t i = 0; i < sizeof sattrs / sizeof *sattrs; i++)
            if (kd_h5_attr_has(&h, NULL, sattrs[i]) && !kd_h5_attr_get_str(&h, NULL, sattrs[i], buf, sizeof buf))
                printf("  @%s = %s\n", sattrs[i], buf);
        static const char *vattrs[] = {"mean", "std"};
        for (size_t i = 0; i < 2; i++) {
            float v[16];
            int n = kd_h5_attr_has(&h, NULL, vattrs[i]) ? kd_h5_attr_get_f32v(&h, NULL, vattrs[i], v, 16) : -1;
            if (n > 0) {
                printf("  @%s =", vattrs[i]);
                for (int k = 0; k < n; k++)
                    printf(" %.6g", v[k]);
                printf("\n");
            }
        }
        char **cls;
        int nc = kd_h5_attr_has(&h, NULL, "classes") ? kd_h5_attr_get_strv(&h, NULL, "classes", &cls) : -1;
        if (nc > 0) {
            printf("  @classes = %d:", nc);
            for (int k = 0; k < nc && k < 20; k++)
                printf(" \"%s\"", cls[k]);
            printf(nc > 20 ? " ...\n" : "\n");
            kd_strv_free(cls, nc);
        }
    }
    walk_ctx w = {&h};
    if (kd_h5_walk(&h, h5_dataset, &w) < 0)
        kd_die_err();
    int det = png_dir && !strcmp(kd_h5_kind(&h), "dataset") && kd_h5_exists(&h, "box_offsets") > 0;
    kd_h5_close(&h);
    if (det)
        png_boxes(path);
    return 0;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_JSON: json = 1; break;
        case OPT_PNG: png_dir = optarg; break;
        case OPT_PNG_COUNT: png_count = (int)kd_parse_long("--png-count", optarg, 1, 4096); break;
        case OPT_PNG_FRAMES: png_frames = (int)kd_parse_long("--png-frames", optarg, 0, 1 << 20); break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (argc - optind > 1)
        kd_usage("too many arguments");
    const char *path = optind < argc ? argv[optind] : "-";
    if (png_dir)
        ensure_dir(png_dir);
    if (strcmp(path, "-") && kd_h5_is_hdf5(path))
        return h5_info(path);
    return stream_info(path);
}
