/* kd_seg — semantic segmentation scores: per-class IoU and mean IoU of
 * predicted masks against a detection dataset's /masks.
 *
 * Masks are u8 [N,H,W], 0 = background, c+1 = class c.  Over all pixels of
 * all images (one confusion matrix, not a mean of per-image scores), the
 * IoU of value v is |pred = v and gt = v| / |pred = v or gt = v|; a value
 * that occurs in neither is left out of the mean (its IoU is NaN, null in
 * JSON).  Background is a class like the others. */
#ifndef KD_SEG_H
#define KD_SEG_H

#include <stdint.h>

typedef struct {
    int ncls;          /* number of mask values: classes + 1 */
    int64_t *conf;     /* [ncls, ncls]: row = ground truth, column = prediction */
    double *iou;       /* [ncls]; NaN for a value absent from both */
    double miou;       /* mean over the values present; NaN if none */
    double pixel_acc;  /* fraction of pixels whose value is right */
    int nvalid;        /* values in the mean */
    int64_t pixels;
} kd_seg_result;

int kd_seg_init(kd_seg_result *r, int ncls);
/* Adds npix pixels; every value must be < ncls (the caller checks). */
void kd_seg_add(kd_seg_result *r, const uint8_t *pred, const uint8_t *gt, int64_t npix);
/* IoUs, mean and pixel accuracy from the confusion matrix. */
void kd_seg_finish(kd_seg_result *r);
void kd_seg_free(kd_seg_result *r);

/* The whole evaluation: /masks of pred_path (any kdpipe file, e.g. kind
 * detections or dataset: u8 [N,H,W] as the ground truth's) against those of
 * the detection dataset gt_path, read in slabs.  -1 with kd_err. */
int kd_seg_evaluate(const char *pred_path, const char *gt_path, kd_seg_result *r);

#endif
