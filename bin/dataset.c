/* dataset — ingest real data into a kdpipe dataset file. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kd_cifar.h"
#include "kd_cli.h"
#include "kd_dataset.h"
#include "kd_idx.h"
#include "kd_imgfolder.h"
#include "kd_scenes.h"

static const char help[] =
    "Usage: dataset [OPTION]... SOURCE -o OUT.h5\n"
    "Ingest images and labels into a kdpipe dataset file (kind 'dataset').\n"
    "\n"
    "SOURCE is a directory or a file:\n"
    "  idx     a directory holding train-images-idx3-ubyte[.gz] and t10k-... files\n"
    "          (MNIST, Fashion-MNIST), or one *-images-idx3-ubyte[.gz] file with its\n"
    "          labels file beside it\n"
    "  cifar   a directory holding CIFAR-10 data_batch_*.bin / test_batch.bin or\n"
    "          CIFAR-100 train.bin / test.bin, or one such .bin file\n"
    "  folder  a directory of class sub-directories of PNG files (ImageFolder)\n"
    "\n"
    "  --format F       idx, cifar or folder (default: detected)\n"
    "  --split S        train (default) or test\n"
    "  --limit N        ingest only the first N images\n"
    "  --resize HxW     folder: resize every image (bilinear) instead of\n"
    "                   rejecting mixed sizes\n"
    "  -o, --output F   the dataset file to write (required)\n"
    "\n"
    "Detection and segmentation scenes (a detection dataset with masks):\n"
    "  --scenes N       write N scenes pasted from the split's images instead\n"
    "  --canvas HxW     scene size (default 96x96)\n"
    "  --objects MIN,MAX  objects per scene, uniform (default 1,4; MIN may be 0)\n"
    "  --scale LO,HI    object scale, uniform in [LO,HI) (default 0.75,2)\n"
    "  --max-overlap T  largest IoU of two objects' boxes (default 0.3)\n"
    "  --fg-threshold V foreground: scaled pixels >= V (default 32); boxes are\n"
    "                   the foreground's tight boxes, masks its class + 1\n"
    "  --seed S         the scenes' random seed (default 0)\n"
    "  --threads N      threads for the scenes (same output whatever N)\n"
    "\n"
    "  --quiet          no progress line\n"
    "  -h, --help       this help;  --version  version\n"
    "\n"
    "Prints one JSON line: n, h, w, c, classes, seconds (scenes: also boxes,\n"
    "dropped).  See dataset(1).\n";

enum {
    OPT_FORMAT = KD_OPT_PROG,
    OPT_SPLIT,
    OPT_LIMIT,
    OPT_RESIZE,
    OPT_SCENES,
    OPT_CANVAS,
    OPT_OBJECTS,
    OPT_SCALE,
    OPT_OVERLAP,
    OPT_FG
};

static const struct option longopts[] = {
    {"format", required_argument, 0, OPT_FORMAT},
    {"split", required_argument, 0, OPT_SPLIT},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"resize", required_argument, 0, OPT_RESIZE},
    {"scenes", required_argument, 0, OPT_SCENES},
    {"canvas", required_argument, 0, OPT_CANVAS},
    {"objects", required_argument, 0, OPT_OBJECTS},
    {"scale", required_argument, 0, OPT_SCALE},
    {"max-overlap", required_argument, 0, OPT_OVERLAP},
    {"fg-threshold", required_argument, 0, OPT_FG},
    {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

static const char *fashion_classes[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/* "A,B" into its two halves (each at most 63 characters). */
static void split_pair(const char *opt, const char *s, char *a, char *b)
{
    const char *comma = strchr(s, ',');
    if (!comma || comma - s > 63 || strlen(comma + 1) > 63)
        kd_usage("%s: '%s' is not two values A,B", opt, s);
    memcpy(a, s, (size_t)(comma - s));
    a[comma - s] = 0;
    strcpy(b, comma + 1);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* dir/name or dir/name.gz, whichever exists. */
static int find_file(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
    if (exists(out))
        return 0;
    snprintf(out, len, "%s/%s.gz", dir, name);
    return exists(out) ? 0 : -1;
}

static int detect(const char *src)
{
    char p[4096];
    if (is_dir(src)) {
        if (!find_file(p, sizeof p, src, "train-images-idx3-ubyte") ||
            !find_file(p, sizeof p, src, "t10k-images-idx3-ubyte"))
            return 'i';
        if (!find_file(p, sizeof p, src, "data_batch_1.bin") || !find_file(p, sizeof p, src, "train.bin") ||
            !find_file(p, sizeof p, src, "test_batch.bin"))
            return 'c';
        return 'f';
    }
    if (strstr(src, "idx3-ubyte"))
        return 'i';
    if (strstr(src, ".bin"))
        return 'c';
    return 0;
}

static void ingest_idx(const char *src, const char *split, int64_t limit, kd_dataset *d)
{
    char ipath[4096], lpath[4096];
    if (is_dir(src)) {
        const char *pre = strcmp(split, "train") ? "t10k" : "train";
        char name[64];
        snprintf(name, sizeof name, "%s-images-idx3-ubyte", pre);
        if (find_file(ipath, sizeof ipath, src, name))
            kd_die(KD_EXIT_FAIL, "%s: no %s[.gz]", src, name);
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte", pre);
        if (find_file(lpath, sizeof lpath, src, name))
            kd_die(KD_EXIT_FAIL, "%s: no %s[.gz]", src, name);
    } else {
        snprintf(ipath, sizeof ipath, "%s", src);
        snprintf(lpath, sizeof lpath, "%s", src);
        char *p = strstr(lpath, "images-idx3");
        if (!p)
            kd_die(KD_EXIT_FAIL, "%s: cannot tell the labels file from this name", src);
        memcpy(p, "labels-idx1", 11);
    }
    kd_idx im, lb;
    if (kd_idx_read(&im, ipath, limit))
        kd_die_err();
    if (im.rank != 3 && im.rank != 4)
        kd_die(KD_EXIT_FAIL, "%s: images IDX has rank %d, expected 3", ipath, im.rank);
    if (kd_idx_read(&lb, lpath, limit))
        kd_die_err();
    if (lb.rank != 1 || lb.dims[0] != im.dims[0])
        kd_die(KD_EXIT_FAIL, "%s: %lld labels for %lld images", lpath, (long long)lb.dims[0], (long long)im.dims[0]);
    d->n = im.dims[0];
    d->h = (int)im.dims[1];
    d->w = (int)im.dims[2];
    d->c = im.rank == 4 ? (int)im.dims[3] : 1;
    d->images = im.data;
    d->labels = malloc(sizeof(int32_t) * (size_t)d->n);
    if (!d->labels)
        kd_die(KD_EXIT_FAIL, "out of memory");
    /* IDX bounds nothing (a label is a byte); the datasets it carries do:
     * the MNIST family has 10 classes, EMNIST's largest split 62 */
    int emnist = strcasestr(src, "emnist") != NULL, maxc = emnist ? 62 : 10, maxl = 0;
    for (int64_t i = 0; i < d->n; i++) {
        d->labels[i] = lb.data[i];
        if (lb.data[i] >= maxc)
            kd_die(KD_EXIT_FAIL, "%s: label %d of image %lld is out of range (%s has %d classes: 0..%d)", lpath,
                   lb.data[i], (long long)i, emnist ? "EMNIST" : "the MNIST family", maxc, maxc - 1);
        if (lb.data[i] > maxl)
            maxl = lb.data[i];
    }
    kd_idx_free(&lb);
    d->nclasses = maxl < 10 ? 10 : maxl + 1;
    if (strcasestr(src, "fashion") && d->nclasses == 10)
        d->classes = (char **)fashion_classes;
    d->source = src;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    const char *format = NULL, *split = "train", *out = NULL;
    int64_t limit = 0;
    int rh = 0, rw = 0;
    int64_t nscenes = 0;
    int scene_opt = 0;
    kd_scenes_opts so = KD_SCENES_DEFAULTS;
    char a[64], b[64];
    int opt;
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_FORMAT:
            format = optarg;
            if (strcmp(format, "idx") && strcmp(format, "cifar") && strcmp(format, "folder"))
                kd_usage("--format: '%s' is not idx, cifar or folder", format);
            break;
        case OPT_SPLIT:
            split = optarg;
            if (strcmp(split, "train") && strcmp(split, "test"))
                kd_usage("--split: '%s' is not train or test", split);
            break;
        case OPT_LIMIT: limit = kd_parse_long("--limit", optarg, 1, 1L << 40); break;
        case OPT_RESIZE: kd_parse_size("--resize", optarg, &rh, &rw); break;
        case OPT_SCENES: nscenes = kd_parse_long("--scenes", optarg, 1, 1L << 30); break;
        case OPT_CANVAS:
            scene_opt = 1;
            kd_parse_size("--canvas", optarg, &so.h, &so.w);
            if (so.h > 4096 || so.w > 4096)
                kd_usage("--canvas: %s is larger than 4096x4096", optarg);
            break;
        case OPT_OBJECTS:
            scene_opt = 1;
            split_pair("--objects", optarg, a, b);
            so.min_objects = (int)kd_parse_long("--objects", a, 0, KD_SCENES_MAX_OBJECTS);
            so.max_objects = (int)kd_parse_long("--objects", b, 0, KD_SCENES_MAX_OBJECTS);
            if (so.min_objects > so.max_objects)
                kd_usage("--objects: MIN %d is above MAX %d", so.min_objects, so.max_objects);
            break;
        case OPT_SCALE:
            scene_opt = 1;
            split_pair("--scale", optarg, a, b);
            so.scale_lo = (float)kd_parse_double("--scale", a, 0.01, 100);
            so.scale_hi = (float)kd_parse_double("--scale", b, 0.01, 100);
            if (so.scale_lo > so.scale_hi)
                kd_usage("--scale: LO %g is above HI %g", so.scale_lo, so.scale_hi);
            break;
        case OPT_OVERLAP:
            scene_opt = 1;
            so.max_overlap = (float)kd_parse_double("--max-overlap", optarg, 0, 1); break;
        case OPT_FG:
            scene_opt = 1;
            so.fg_threshold = (int)kd_parse_long("--fg-threshold", optarg, 1, 255);
            break;
        case 'o': out = optarg; break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (optind != argc - 1)
        kd_usage(optind < argc ? "too many arguments" : "missing SOURCE");
    if (scene_opt && !nscenes)
        kd_usage("--canvas, --objects, --scale, --max-overlap and --fg-threshold need --scenes N");
    if (!out)
        kd_usage("missing -o OUT.h5");
    if (!strcmp(out, "-"))
        kd_usage("-o: a dataset file cannot be written to stdout");
    kd_cli_output(out);
    const char *src = argv[optind];
    if (!exists(src))
        kd_die(KD_EXIT_FAIL, "%s: %s", src, strerror(ENOENT));
    int f = format ? format[0] : detect(src);
    double t0 = kd_now();
    kd_dataset d = {0};
    int cifar = 0;
    switch (f) {
    case 'i': ingest_idx(src, split, limit, &d); break;
    case 'c': {
        char warn[4400];
        if (kd_cifar_read(src, split, limit, &d, warn, sizeof warn))
            kd_die_err();
        if (warn[0])
            kd_warn("%s", warn);
        cifar = 1;
        break;
    }
    case 'f':
        if (kd_imgfolder_read(src, limit, rh, rw, &d))
            kd_die_err();
        break;
    default: kd_die(KD_EXIT_FAIL, "%s: cannot tell the format; use --format", src);
    }
    kd_dataset sc = {0};
    int64_t dropped = 0;
    if (nscenes) {
        so.seed = std.seed;
        so.threads = kd_cli_threads(&std);
        if (kd_scenes_make(&d, nscenes, &so, &sc, &dropped))
            kd_die_err();
        char how[512];
        snprintf(how, sizeof how,
                 "split=%s limit=%lld canvas=%dx%d objects=%d,%d scale=%g,%g max_overlap=%g fg_threshold=%d seed=%llu",
                 split, (long long)limit, so.h, so.w, so.min_objects, so.max_objects, so.scale_lo, so.scale_hi,
                 so.max_overlap, so.fg_threshold, (unsigned long long)so.seed);
        sc.scenes = how;
        if (kd_dataset_write(&sc, out))
            kd_die_err();
    } else if (kd_dataset_write(&d, out))
        kd_die_err();
    const kd_dataset *w = nscenes ? &sc : &d;
    kd_json j;
    kd_json_begin(&j, stdout);
    kd_json_str(&j, "output", out);
    kd_json_int(&j, "n", w->n);
    kd_json_int(&j, "h", w->h);
    kd_json_int(&j, "w", w->w);
    kd_json_int(&j, "c", w->c);
    kd_json_int(&j, "classes", w->nclasses);
    if (nscenes) {
        kd_json_int(&j, "boxes", sc.nboxes);
        kd_json_int(&j, "dropped", dropped);
    }
    kd_json_num(&j, "seconds", kd_now() - t0);
    kd_json_end(&j);
    kd_scenes_free(&sc);
    if (cifar) {
        kd_cifar_free(&d);
        return 0;
    }
    free(d.images);
    free(d.labels);
    if (d.classes && d.classes != (char **)fashion_classes) {
        for (int i = 0; i < d.nclasses; i++)
            free(d.classes[i]);
        free(d.classes);
    }
    return 0;
}
