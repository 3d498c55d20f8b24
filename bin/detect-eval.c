/* detect-eval — score detections against ground truth: COCO AP/AR with
 * pycocotools' semantics, and VOC AP50. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd_cli.h"
#include "kd_coco.h"
#include "kd_h5.h"
#include "kd_seg.h"

static const char help[] =
    "Usage: detect-eval --gt GT --dets DETS [OPTION]...\n"
    "       detect-eval --gt SCENES.h5 --seg PRED.h5 [--dets DETS] [OPTION]...\n"
    "Score detections: COCO AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100,\n"
    "ARs, ARm, ARl exactly as pycocotools computes them, and VOC AP50 (11-point\n"
    "and all-point).\n"
    "\n"
    "  --gt GT          COCO annotations JSON, or a kdpipe detection dataset file\n"
    "  --dets DETS      COCO results JSON list, or a kdpipe detections file\n"
    "  --seg PRED       also (or only) score the masks /masks u8 [N,H,W] of PRED\n"
    "                   (any kdpipe HDF5 file) against GT's: per-class IoU\n"
    "                   (background included) and mean IoU over the classes\n"
    "                   present in the prediction or the ground truth\n"
    "  --per-class      add per-category AP (and VOC AP50) under \"per_class\"\n"
    "  --voc            accepted; VOC AP50 (11-point and all-point) is always printed\n"
    "  --iou-type bbox  the only IoU type (segm and keypoints are not supported)\n"
    "  GT or DETS may be - for standard input (JSON only)\n"
    "  --quiet, -h/--help, --version\n"
    "\n"
    "Prints one JSON object (with --seg: mIoU, pixel_accuracy, classes_in_mean,\n"
    "iou: one entry per mask value, null for a class in neither).  Categories and images without ground truth give\n"
    "-1 where pycocotools gives -1.  See detect-eval(1).\n";

enum { OPT_GT = KD_OPT_PROG, OPT_DETS, OPT_SEG, OPT_PERCLASS, OPT_VOC, OPT_IOUTYPE };
static const struct option longopts[] = {
    {"gt", required_argument, 0, OPT_GT},
    {"dets", required_argument, 0, OPT_DETS},
    {"seg", required_argument, 0, OPT_SEG},
    {"per-class", no_argument, 0, OPT_PERCLASS},
    {"voc", no_argument, 0, OPT_VOC},
    {"iou-type", required_argument, 0, OPT_IOUTYPE},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

/* jansson builds a tree ~11x the size of the JSON text out of many small
 * mallocs; on first touch every 4 KiB page costs a fault (a third of the
 * run time on a 10 MB results file).  Grow the heap once, by about what the
 * inputs will need, and ask for transparent huge pages there.  Advice only:
 * any failure leaves the ordinary heap. */
static void heap_reserve(const char *a, const char *b)
{
    struct stat sa, sb;
    size_t need = 64u << 20;
    if (stat(a, &sa) == 0 && S_ISREG(sa.st_mode))
        need += 16 * (size_t)sa.st_size;
    if (stat(b, &sb) == 0 && S_ISREG(sb.st_mode))
        need += 16 * (size_t)sb.st_size;
    if (need > ((size_t)4 << 30))
        need = (size_t)4 << 30;
    mallopt(M_TOP_PAD, (int)(need > INT32_MAX ? INT32_MAX : need));
    mallopt(M_TRIM_THRESHOLD, (int)(need > INT32_MAX ? INT32_MAX : need));
    /* a block larger than the free top forces one sbrk of block + pad */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    void *p = malloc(16u << 20);
    if (!p)
        return;
    uintptr_t lo = ((uintptr_t)p + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1);
    uintptr_t hi = (uintptr_t)sbrk(0) & ~(uintptr_t)((2u << 20) - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    free(p);
}

static void json_num(FILE *o, double v)
{
    if (isfinite(v))
        fprintf(o, "%.17g", v);
    else
        fprintf(o, "null");
}

/* The COCO / VOC stats of dets against gt, as the first keys of the object. */
static void boxes_eval(FILE *o, const char *gt, const char *dets, int per_class)
{
    heap_reserve(gt, dets);
    kd_coco c = {0};
    if ((kd_h5_is_hdf5(gt) ? kd_coco_load_gt_h5(&c, gt) : kd_coco_load_gt_json(&c, gt)) ||
        kd_coco_load_dets(&c, dets))
        kd_die_err();
    int bad = kd_coco_prepare(&c);
    if (bad) {
        kd_err_prefix("%s", bad == -2 ? dets : gt);
        kd_die_err();
    }
    kd_coco_result r;
    if (kd_coco_evaluate(&c, &r))
        kd_die_err();
    for (int s = 0; s < KD_COCO_NSTATS; s++)
        fprintf(o, "%s\"%s\": %.17g", s ? ", " : "", kd_coco_stat_names[s], r.stats[s]);
    fprintf(o, ", \"voc_ap50_11pt\": %.17g, \"voc_ap50_all\": %.17g", r.voc11, r.vocall);
    if (per_class) {
        fprintf(o, ", \"per_class\": {");
        for (int k = 0; k < c.ncats; k++) {
            fprintf(o, "%s\"%lld\": {\"name\": ", k ? ", " : "", (long long)c.cats[k]);
            kd_json_fputs(o, c.catnames[k] ? c.catnames[k] : "");
            fprintf(o, ", \"AP\": %.17g, \"voc_ap50\": %.17g}", r.per_class[k], r.voc_class[k]);
        }
        fprintf(o, "}");
    }
    kd_coco_result_free(&r);
    kd_coco_free(&c);
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    const char *gt = NULL, *dets = NULL, *seg = NULL;
    int per_class = 0, opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_GT: gt = optarg; break;
        case OPT_DETS: dets = optarg; break;
        case OPT_SEG: seg = optarg; break;
        case OPT_PERCLASS: per_class = 1; break;
        case OPT_VOC: break; /* VOC AP50 is always reported; kept for scripts */
        case OPT_IOUTYPE:
            if (strcmp(optarg, "bbox") != 0)
                kd_usage("--iou-type: only bbox is supported, not '%s'", optarg);
            break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (optind < argc)
        kd_usage("unexpected argument '%s'", argv[optind]);
    if (!gt || (!dets && !seg))
        kd_usage("both --gt and --dets are required");
    if (dets && strcmp(gt, "-") == 0 && strcmp(dets, "-") == 0)
        kd_usage("only one of --gt and --dets can be standard input");
    if (seg && (!strcmp(gt, "-") || !strcmp(seg, "-")))
        kd_usage("--seg: masks are read from named HDF5 files, not standard input");
    char *out = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&out, &len);
    if (!o)
        kd_die(KD_EXIT_FAIL, "out of memory");
    fprintf(o, "{");
    if (dets)
        boxes_eval(o, gt, dets, per_class);
    if (seg) {
        kd_seg_result r;
        if (kd_seg_evaluate(seg, gt, &r))
            kd_die_err();
        fprintf(o, "%s\"mIoU\": ", dets ? ", " : "");
        json_num(o, r.miou);
        fprintf(o, ", \"pixel_accuracy\": ");
        json_num(o, r.pixel_acc);
        fprintf(o, ", \"classes_in_mean\": %d, \"iou\": [", r.nvalid);
        for (int v = 0; v < r.ncls; v++) {
            fprintf(o, v ? ", " : "");
            json_num(o, r.iou[v]);
        }
        fprintf(o, "]");
        kd_seg_free(&r);
    }
    fprintf(o, "}\n");
    /* written only once every part is computed: an error leaves stdout empty */
    if (fclose(o))
        kd_die(KD_EXIT_FAIL, "out of memory");
    fwrite(out, 1, len, stdout);
    free(out);
    return 0; /* a lost result is exit 1 with a message, by kd_cli's check at exit */
}
