/* kd_coco — COCO bounding-box evaluation with pycocotools' semantics, and
 * VOC AP50.
 *
 * Ground truth: images, categories, and boxes (x, y, w, h) with an area
 * (COCO's "area" field, used for the area ranges) and a crowd flag.
 * Detections: image, category, box, score.  Evaluation follows cocoeval.py:
 * per image and category, detections sorted by score (stable) and cut to
 * 100; greedy matching at IoU thresholds .50:.05:.95, best IoU first, ties
 * to the later ground truth, crowd regions matched repeatedly (IoU against
 * a crowd box = intersection / detection area) and not counted; ground
 * truth outside an area range ignored, unmatched detections outside it
 * ignored; precision made monotone and sampled at 101 recall points;
 * -1 where there is no ground truth. */
#ifndef KD_COCO_H
#define KD_COCO_H

#include <stdint.h>

typedef struct {
    double x, y, w, h;
    double area;   /* gt: as given; dets: w*h */
    double score;  /* dets */
    int64_t image; /* image id */
    int64_t cat;   /* category id */
    int64_t id;    /* annotation id (dets: 1-based position) */
    int crowd;
} kd_coco_box;

typedef struct {
    int64_t *images;  /* image ids, sorted */
    int nimages;
    int64_t *cats;    /* category ids, sorted */
    char **catnames;  /* parallel to cats (may hold NULLs) */
    int ncats;
    kd_coco_box *gt;
    int64_t ngt;
    kd_coco_box *dt;
    int64_t ndt;
} kd_coco;

enum { KD_COCO_NSTATS = 12 };
extern const char *const kd_coco_stat_names[KD_COCO_NSTATS];

typedef struct {
    double stats[KD_COCO_NSTATS];
    double *per_class;  /* [ncats] AP per category, -1 without ground truth */
    double voc11, vocall;
    double *voc_class;  /* [ncats] VOC all-point AP50, -1 without ground truth */
} kd_coco_result;

/* Sorts ids, checks that every box names a known image and category.
 * With kd_err otherwise: -1 when the ground truth is at fault (an id twice,
 * an annotation naming no image or category), -2 when a detection is. */
int kd_coco_prepare(kd_coco *c);
int kd_coco_evaluate(const kd_coco *c, kd_coco_result *r);
void kd_coco_result_free(kd_coco_result *r);
void kd_coco_free(kd_coco *c);

/* Readers: COCO annotations JSON and results JSON (jansson), and the kdpipe
 * HDF5 layouts (a detection dataset file; a detections file). */
int kd_coco_load_gt_json(kd_coco *c, const char *path);
int kd_coco_load_dets_json(kd_coco *c, const char *path);
int kd_coco_load_gt_h5(kd_coco *c, const char *path);
int kd_coco_load_dets_h5(kd_coco *c, const char *path);
/* Detections in any of the three forms (HDF5, tensor stream, JSON), told
 * apart by their first bytes; "-" reads standard input. */
int kd_coco_load_dets(kd_coco *c, const char *path);

#endif
