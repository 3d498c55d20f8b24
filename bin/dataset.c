/* dataset — ingest real data into a kdpipe dataset file. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kd_cli.h"
#include "kd_dataset.h"
#include "kd_idx.h"
#include "kd_imgfolder.h"

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
    "  --quiet          no progress line\n"
    "  -h, --help       this help;  --version  version\n"
    "\n"
    "Prints one JSON line: n, h, w, c, classes, seconds.  See dataset(1).\n";

enum { OPT_FORMAT = KD_OPT_PROG, OPT_SPLIT, OPT_LIMIT, OPT_RESIZE };

static const struct option longopts[] = {
    {"format", required_argument, 0, OPT_FORMAT},
    {"split", required_argument, 0, OPT_SPLIT},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"resize", required_argument, 0, OPT_RESIZE},
    {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

static const char *fashion_classes[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *cifar10_classes[] = {"airplane", "automobile", "bird", "cat", "deer",
                                        "dog", "frog", "horse", "ship", "truck"};

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
    int maxl = 0;
    for (int64_t i = 0; i < d->n; i++) {
        d->labels[i] = lb.data[i];
        if (lb.data[i] > maxl)
            maxl = lb.data[i];
    }
    kd_idx_free(&lb);
    d->nclasses = maxl < 10 ? 10 : maxl + 1;
    if (strcasestr(src, "fashion") && d->nclasses == 10)
        d->classes = (char **)fashion_classes;
    d->source = src;
}

/* Class names from a CIFAR text file (batches.meta.txt, fine_label_names.txt):
 * the first n non-blank lines, trimmed.  NULL when the file is absent or has
 * fewer than n names (the built-in or numeric names are used then). */
static char **read_names(const char *dir, const char *file, int n)
{
    char p[4200], line[256];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *fp = fopen(p, "r");
    if (!fp)
        return NULL;
    char **names = calloc((size_t)n, sizeof *names);
    int k = 0;
    while (names && k < n && fgets(line, sizeof line, fp)) {
        char *b = line, *e = line + strlen(line);
        while (*b == ' ' || *b == '\t')
            b++;
        while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        if (*b && !(names[k++] = strdup(b)))
            break;
    }
    fclose(fp);
    if (names && k == n && names[n - 1])
        return names;
    if (names) {
        kd_warn("%s: %d class names, expected %d; using %s names", p, k, n, n == 10 ? "CIFAR-10" : "numeric");
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
    }
    return NULL;
}

/* CIFAR binary records: label byte(s) then 3072 bytes, channel-planar 32x32. */
static void ingest_cifar(const char *src, const char *split, int64_t limit, kd_dataset *d)
{
    char files[8][4096];
    int nf = 0, c100 = 0;
    if (is_dir(src)) {
        char p[4096];
        if (!strcmp(split, "train")) {
            for (int i = 1; i <= 5; i++) {
                char name[32];
                snprintf(name, sizeof name, "data_batch_%d.bin", i);
                if (!find_file(p, sizeof p, src, name))
                    snprintf(files[nf++], sizeof files[0], "%s", p);
            }
            if (!nf && !find_file(p, sizeof p, src, "train.bin")) {
                snprintf(files[nf++], sizeof files[0], "%s", p);
                c100 = 1;
            }
        } else {
            if (!find_file(p, sizeof p, src, "test_batch.bin"))
                snprintf(files[nf++], sizeof files[0], "%s", p);
            else if (!find_file(p, sizeof p, src, "test.bin")) {
                snprintf(files[nf++], sizeof files[0], "%s", p);
                c100 = 1;
            }
        }
        if (!nf)
            kd_die(KD_EXIT_FAIL, "%s: no CIFAR %s batches", src, split);
    } else {
        snprintf(files[nf++], sizeof files[0], "%s", src);
        const char *b = strrchr(src, '/');
        b = b ? b + 1 : src;
        c100 = !strncmp(b, "train.bin", 9) || !strncmp(b, "test.bin", 8);
    }
    const int rec = (c100 ? 2 : 1) + 3072;
    int64_t cap = 0;
    d->n = 0;
    d->h = d->w = 32;
    d->c = 3;
    d->images = NULL;
    d->labels = NULL;
    int maxl = 0;
    unsigned char *r = malloc((size_t)rec);
    if (!r)
        kd_die(KD_EXIT_FAIL, "out of memory");
    for (int f = 0; f < nf && (limit <= 0 || d->n < limit); f++) {
        FILE *fp = fopen(files[f], "rb");
        if (!fp)
            kd_die(KD_EXIT_FAIL, "%s: %s", files[f], strerror(errno));
        long sz = fseek(fp, 0, SEEK_END) ? -1 : ftell(fp);
        if (sz < 0 || fseek(fp, 0, SEEK_SET))
            kd_die(KD_EXIT_FAIL, "%s: %s", files[f], strerror(errno));
        if (sz <= 0 || sz % rec)
            kd_die(KD_EXIT_FAIL, "%s: size %ld is not a whole number of %d-byte CIFAR records", files[f], sz, rec);
        for (long k = 0; k < sz / rec && (limit <= 0 || d->n < limit); k++) {
            if (fread(r, 1, (size_t)rec, fp) != (size_t)rec)
                kd_die(KD_EXIT_FAIL, "%s: short read", files[f]);
            if (d->n == cap) {
                cap = cap ? 2 * cap : 10000;
                d->images = realloc(d->images, (size_t)cap * 3072);
                d->labels = realloc(d->labels, (size_t)cap * sizeof(int32_t));
                if (!d->images || !d->labels)
                    kd_die(KD_EXIT_FAIL, "out of memory");
            }
            int lab = r[c100 ? 1 : 0];
            const unsigned char *px = r + (c100 ? 2 : 1);
            uint8_t *out = d->images + d->n * 3072;
            for (int i = 0; i < 1024; i++)
                for (int ch = 0; ch < 3; ch++)
                    out[i * 3 + ch] = px[ch * 1024 + i];
            d->labels[d->n++] = lab;
            if (lab > maxl)
                maxl = lab;
        }
        fclose(fp);
    }
    free(r);
    if (!d->n)
        kd_die(KD_EXIT_FAIL, "%s: no images", src);
    d->nclasses = c100 ? 100 : 10;
    if (maxl >= d->nclasses)
        kd_die(KD_EXIT_FAIL, "%s: label %d out of range for CIFAR-%d", src, maxl, d->nclasses);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", src);
    if (!is_dir(src)) {
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(dir, sizeof dir, ".");
    }
    d->classes = read_names(dir, c100 ? "fine_label_names.txt" : "batches.meta.txt", d->nclasses);
    if (!d->classes && !c100)
        d->classes = (char **)cifar10_classes;
    d->source = src;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(argv[0], help, &std);
    const char *format = NULL, *split = "train", *out = NULL;
    int64_t limit = 0;
    int rh = 0, rw = 0;
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
        case 'o': out = optarg; break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (optind != argc - 1)
        kd_usage(optind < argc ? "too many arguments" : "missing SOURCE");
    if (!out)
        kd_usage("missing -o OUT.h5");
    if (!strcmp(out, "-"))
        kd_usage("-o: a dataset file cannot be written to stdout");
    const char *src = argv[optind];
    if (!exists(src))
        kd_die(KD_EXIT_FAIL, "%s: %s", src, strerror(ENOENT));
    int f = format ? format[0] : detect(src);
    double t0 = kd_now();
    kd_dataset d = {0};
    switch (f) {
    case 'i': ingest_idx(src, split, limit, &d); break;
    case 'c': ingest_cifar(src, split, limit, &d); break;
    case 'f':
        if (kd_imgfolder_read(src, limit, rh, rw, &d))
            kd_die_err();
        break;
    default: kd_die(KD_EXIT_FAIL, "%s: cannot tell the format; use --format", src);
    }
    if (kd_dataset_write(&d, out))
        kd_die_err();
    kd_json j;
    kd_json_begin(&j, stdout);
    kd_json_str(&j, "output", out);
    kd_json_int(&j, "n", d.n);
    kd_json_int(&j, "h", d.h);
    kd_json_int(&j, "w", d.w);
    kd_json_int(&j, "c", d.c);
    kd_json_int(&j, "classes", d.nclasses);
    kd_json_num(&j, "seconds", kd_now() - t0);
    kd_json_end(&j);
    free(d.images);
    free(d.labels);
    if (d.classes && d.classes != (char **)fashion_classes && d.classes != (char **)cifar10_classes) {
        for (int i = 0; i < d.nclasses; i++)
            free(d.classes[i]);
        free(d.classes);
    }
    return 0;
}
