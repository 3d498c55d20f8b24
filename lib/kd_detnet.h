/* kd_detnet — a detector: a backbone (kd_model) whose stage map feeds the
 * head of kd_det.h, with the input normalisation, for detect-train and
 * detect alike.  Files: a model file (the backbone, kd_model_io) plus the
 * head under /det and its configuration as root attributes det_* (layout in
 * man/man1/detect-train.1). */
#ifndef KD_DETNET_H
#define KD_DETNET_H

#include "kd_det.h"
#include "kd_h5.h"
#include "kd_model.h"

typedef struct {
    kd_model *m;
    kd_dethead *head;       /* after kd_detnet_prepare */
    int stage, stride, nup; /* the backbone stage, the output stride, x2 upsamplings */
    int skip;               /* the stage of the masks' skip map (0: none; kd_det.h) */
    int saved_sC;           /* a loaded head's skip width (det/skip.0.weight's input channels) */
    int up, hc, K;          /* head widths, classes */
    int c;                  /* the backbone's input channels */
    float mean[3], std[3];  /* normalisation of pixel/255 */
    int nnames;
    char **names;           /* class names (may be NULL) */
    int maxn, H, W;         /* prepared batch and image size */
    int train, freeze;
    int flip_test;          /* set before prepare: kd_detnet_run merges each image with its mirror */
    int merged;             /* the last batch's outputs are the merged ones in fl */
    float *fl;              /* flip test: hm [maxn,K,h,w], wh and off [maxn,2,h,w], seg [maxn,K+1,Hs,Ws] */
    float *x;               /* [maxn,c,H,W] normalised input */
    float *dmap;            /* [maxn,C,h,w] the stage map's gradient (training, not frozen) */
    float *dskip;           /* the skip map's, likewise */
    float *saved_p, *saved_b; /* head parameters read from a file, before prepare */
    size_t nsaved_p, nsaved_b;
    float *scr, *lg;        /* decode scratch [K*h*w], mask logits [(K+1)*H*W] */
    int32_t *iscr;
} kd_detnet;

/* The stage that gives output stride `stride` on H x W inputs: `stage`
 * (> 0) or else the deepest whose stride divides into a power of two
 * multiple of `stride`; *nup x2 upsamplings bring it to that stride.
 * Needs m prepared at H x W.  -1 with kd_err "ARCH has no stage at stride
 * S (strides: ...)". */
int kd_detnet_pick_stage(kd_model *m, int H, int W, int stride, int stage, int *out_stage, int *nup);

/* Checks a skip stage against the head's stage: one of the model's stages
 * other than `stage` (m need not be prepared; -1 with kd_err "ARCH: no
 * skip from stage S (...)"); with H > 0 (m prepared at H x W), also that its map is at
 * least as fine as the head's output. */
int kd_detnet_check_skip(kd_model *m, int H, int W, int stage, int nup, int skip);

/* Plans the backbone (and builds the head) for maxn images of H x W; train:
 * training forwards (the backbone too unless freeze).  Head parameters
 * loaded by kd_detnet_load are copied in; otherwise initialised from seed. */
int kd_detnet_prepare(kd_detnet *d, int maxn, int H, int W, int train, int freeze, uint64_t seed);
/* u8 images [n,H,W,cin] (cin 1 or the backbone's channels) into d->x. */
void kd_detnet_input(kd_detnet *d, const uint8_t *img, int n, int cin);
/* Backbone (train mode unless frozen or !train) then head. */
int kd_detnet_forward(kd_detnet *d, int n, int train);
/* CenterNet's flip test on the n images in d->x (needs flip_test at
 * prepare): an eval forward of them and one of their mirror images; the
 * heatmap's probabilities, the sizes and the masks' logits averaged with
 * the mirror's flipped back, the offsets the image's own (as CenterNet's
 * ctdet flip_test).  decode and mask then read the merged outputs.  d->x
 * is left mirrored. */
int kd_detnet_forward_flip(kd_detnet *d, int n);
/* After a forward: head backward, then the backbone's unless frozen. */
int kd_detnet_backward(kd_detnet *d);
/* Detections of image i of the last forward (<= topk) and its mask
 * [H,W] (argmax of the bilinearly upsampled segmentation logits). */
int kd_detnet_decode(kd_detnet *d, int i, int topk, kd_cn_det *out);
void kd_detnet_mask(kd_detnet *d, int i, uint8_t *mask);
void kd_detnet_free(kd_detnet *d);

/* Detections of many images: det[i] of image ids[i]. */
typedef struct {
    kd_cn_det *det;
    int64_t *ids;
    int64_t n, cap;
} kd_detlist;
void kd_detlist_free(kd_detlist *l);

/* Eval-mode detection of images [n,H,W,cin] (H x W as prepared) in
 * batches of d->maxn: the topk of each image appended to l with ids
 * first_id + row, masks [n,H,W] (NULL: none).  progress(done, ctx) after
 * every batch when given. */
int kd_detnet_run(kd_detnet *d, const uint8_t *images, int64_t n, int cin, int64_t first_id, int topk,
                  kd_detlist *l, uint8_t *masks, void (*progress)(int64_t done, void *ctx), void *ctx);

/* Writers (lib/io/kd_dets_io.c), each whole or not at all: a detections
 * file (kind detections: /boxes /scores /labels /image_ids, /masks u8
 * [n,H,W] when masks != NULL), a COCO results JSON list, or a tensor
 * stream of one frame (boxes, scores, labels, image_ids). */
int kd_dets_write_h5(const kd_detlist *l, const uint8_t *masks, int64_t n, int H, int W, const char *path);
int kd_dets_write_json(const kd_detlist *l, const char *path);
int kd_dets_write_stream(const kd_detlist *l, const char *path);

/* Model file with the head (kind "model"); train != NULL adds nothing here:
 * checkpoints write their /train group into the open file themselves. */
int kd_detnet_save_h5(const kd_detnet *d, kd_h5 *h);
/* NULL-safe load of a detector file (kd_err "path: ..."); a plain backbone
 * file without /det is refused with "path: not a detector (no det_stage
 * attribute; train one with detect-train)". */
int kd_detnet_load(kd_detnet *d, const char *path);

/* ---- training (lib/train/kd_det_train.c) ---- */

typedef struct {
    float hm, wh, off, seg; /* loss weights: CenterNet's 1, 0.1, 1; segmentation 5 (detect-train(1)) */
} kd_det_weights;

enum { KD_DET_MAX_OBJ = 128 };

/* Targets and losses of the batch of the last training forward, given the
 * (augmented) boxes of each image (boxes[off[i]..off[i+1]-1], pixels) and
 * masks [n,H,W] (NULL: no segmentation loss); the output gradients are
 * set for kd_detnet_backward.  term[4]: hm, wh, off, seg (unweighted);
 * returns the weighted sum.  Scratch allocated at the first call. */
typedef struct kd_det_loss kd_det_loss;
kd_det_loss *kd_det_loss_new(const kd_detnet *d);
void kd_det_loss_free(kd_det_loss *L);
double kd_det_loss_compute(kd_det_loss *L, kd_detnet *d, int n, const float *boxes, const int32_t *labels,
                           const int *off, const uint8_t *masks, const kd_det_weights *w, double term[4]);

#endif
