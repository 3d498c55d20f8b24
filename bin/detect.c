/* detect — run a detector (detect-train) on a dataset's images: heatmap
 * peaks to boxes, and semantic masks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_dataset.h"
#include "kd_detnet.h"
#include "kd_gemm.h"

static const char help[] =
    "Usage: detect -m DETECTOR.h5 [OPTION]... IMAGES.h5 -o DETS\n"
    "Detect objects in the images of a dataset file (scenes or plain images) with\n"
    "a detector trained by detect-train: heatmap peaks (3x3 max-pool suppression),\n"
    "the best --topk per image, boxes from the size and offset heads; and the\n"
    "segmentation head's masks (argmax of its logits bilinearly upsampled).\n"
    "\n"
    "  -m, --model FILE   the detector (detect-train -o)\n"
    "  -o, --output FILE  detections: HDF5 (kind detections: /boxes /scores /labels\n"
    "                     /image_ids, and /masks), COCO results JSON, or a tensor\n"
    "                     stream (one frame: boxes, scores, labels, image_ids)\n"
    "  --format F         h5, json or kdt (default: from the name: .h5, .json, else kdt)\n"
    "  --masks FILE       with json or kdt: the masks in an HDF5 file of their own\n"
    "  --no-masks         no masks in the HDF5 output\n"
    "  --topk N           detections per image (default 100)\n"
    "  --batch N          images per forward (default 32)\n"
    "  --limit N          the first N images\n"
    "  --flip-test        average each image's heatmap, sizes and mask logits with\n"
    "                     its mirror image's (CenterNet's flip test; twice the work)\n"
    "  --threads N, --quiet, --progress, -h/--help, --version\n"
    "\n"
    "Prints one JSON line: images, detections, seconds, images_per_second.\n"
    "See detect(1).\n";

enum { OPT_FORMAT = KD_OPT_PROG, OPT_MASKS, OPT_NOMASKS, OPT_TOPK, OPT_BATCH, OPT_LIMIT, OPT_FLIP };
static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},      {"output", required_argument, 0, 'o'},
    {"format", required_argument, 0, OPT_FORMAT}, {"masks", required_argument, 0, OPT_MASKS},
    {"no-masks", no_argument, 0, OPT_NOMASKS}, {"topk", required_argument, 0, OPT_TOPK},
    {"batch", required_argument, 0, OPT_BATCH}, {"limit", required_argument, 0, OPT_LIMIT},
    {"flip-test", no_argument, 0, OPT_FLIP},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

static int ends_with(const char *s, const char *t)
{
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

typedef struct {
    kd_std_opts *std;
    int64_t n;
    double t0;
} prog;

static void progress(int64_t done, void *ctx)
{
    prog *p = ctx;
    kd_progress_run(p->std, (long)done, (long)p->n, done / (kd_now() - p->t0 + 1e-9), "images", "detecting");
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    const char *model = NULL, *out = NULL, *fmt = NULL, *mpath = NULL;
    int nomask = 0, topk = 100, batch = 32, flip = 0;
    int64_t limit = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "h5") && strcmp(optarg, "json") && strcmp(optarg, "kdt"))
                kd_usage("--format: h5, json or kdt, not '%s'", optarg);
            fmt = optarg;
            break;
        case OPT_MASKS: mpath = optarg; break;
        case OPT_NOMASKS: nomask = 1; break;
        case OPT_TOPK: topk = (int)kd_parse_long("--topk", optarg, 1, 100000); break;
        case OPT_BATCH: batch = (int)kd_parse_long("--batch", optarg, 1, 4096); break;
        case OPT_LIMIT: limit = kd_parse_long("--limit", optarg, 1, INT64_MAX / 2); break;
        case OPT_FLIP: flip = 1; break;
        default: kd_cli_std(opt, optarg, &std);
        }
    }
    if (!model)
        kd_usage("a detector is required (-m DETECTOR.h5)");
    if (!out)
        kd_usage("an output is required (-o DETS)");
    if (kd_gemm_init(std.threads))
        kd_die_err();
    if (optind == argc)
        kd_usage("an input dataset file is required");
    if (optind != argc - 1)
        kd_usage("one input file, not %d", argc - optind);
    const char *in = argv[optind];
    if (!fmt)
        fmt = ends_with(out, ".h5") ? "h5" : ends_with(out, ".json") ? "json" : "kdt";
    if (mpath && !strcmp(fmt, "h5"))
        kd_usage("--masks is for json or kdt output; HDF5 output holds its masks");
    kd_detnet d;
    if (kd_detnet_load(&d, model))
        kd_die_err();
    kd_dataset_info info;
    kd_dataset_file *f = kd_dataset_open(in, &info);
    if (!f)
        kd_die_err();
    if (info.c != 1 && info.c != d.c)
        kd_die(KD_EXIT_FAIL, "%s: %d-channel images for a %d-channel detector", in, info.c, d.c);
    int64_t n = limit && limit < info.n ? limit : info.n;
    size_t img = (size_t)info.h * info.w;
    uint8_t *images = malloc(img * info.c * (size_t)n);
    int want_masks = strcmp(fmt, "h5") ? mpath != NULL : !nomask;
    uint8_t *masks = want_masks ? malloc(img * (size_t)n) : NULL;
    if (!images || (want_masks && !masks))
        kd_die(KD_EXIT_FAIL, "%s: out of memory for %lld images", in, (long long)n);
    if (kd_dataset_read_rows(f, 0, n, images, NULL))
        kd_die_err();
    kd_dataset_close(f);
    d.flip_test = flip;
    if (kd_detnet_prepare(&d, batch < n ? batch : (int)n, info.h, info.w, 0, 1, 0))
        kd_die(KD_EXIT_FAIL, "%s: %s", model, kd_err_get());
    kd_detlist l = {0};
    prog pg = {.std = &std, .n = n, .t0 = kd_now()};
    if (kd_detnet_run(&d, images, n, info.c, 0, topk, &l, masks, progress, &pg))
        kd_die_err();
    kd_progress_end(&std);
    double secs = kd_now() - pg.t0;
    int rc = !strcmp(fmt, "h5")     ? kd_dets_write_h5(&l, masks, n, info.h, info.w, out)
             : !strcmp(fmt, "json") ? kd_dets_write_json(&l, out)
                                    : kd_dets_write_stream(&l, out);
    if (rc)
        kd_die_err();
    if (mpath && strcmp(fmt, "h5") && kd_dets_write_h5(&(kd_detlist){0}, masks, n, info.h, info.w, mpath))
        kd_die_err();
    kd_json j;
    kd_json_begin(&j, strcmp(out, "-") ? stdout : stderr); /* "-": stdout holds the stream */
    kd_json_str(&j, "output", out);
    kd_json_int(&j, "images", n);
    kd_json_int(&j, "detections", l.n);
    kd_json_num(&j, "seconds", secs);
    kd_json_num(&j, "images_per_second", n / (secs + 1e-12));
    kd_json_end(&j);
    kd_detlist_free(&l);
    kd_detnet_free(&d);
    free(images), free(masks);
    return 0;
}
