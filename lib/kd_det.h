/* kd_det — a CenterNet-style detection and segmentation head on a backbone
 * stage map (Zhou et al. 2019, "Objects as Points"), its targets, losses
 * and decoding.  man/man1/detect-train.1 describes the method; the numbers
 * are checked against tests/gen/centernet.py.
 *
 * Geometry: the head works at output stride S (4 or 8): cell (y, x) of an
 * H/S x W/S map stands for the image square [xS, (x+1)S) x [yS, (y+1)S).
 * An object with box (x, y, w, h) in pixels has its centre c = ((x + w/2)/S,
 * (y + h/2)/S) in output units, its peak at cell floor(c), its offset
 * target c - floor(c) and its size target (w/S, h/S). */
#ifndef KD_DET_H
#define KD_DET_H

#include <stddef.h>
#include <stdint.h>

#include "kd_layers.h"
#include "kd_slab.h"

/* ---- targets ---- */

/* CenterNet's gaussian_radius(det_size=(h, w), min_overlap) as its code
 * computes it (three quadratic cases, the smallest root). */
double kd_cn_radius(double h, double w, double min_overlap);
/* draw_umich_gaussian: a (2r+1)^2 Gaussian with sigma (2r+1)/6 (values
 * below DBL_EPSILON times its peak set to 0) maxed into heat [H,W] at
 * (cx, cy), clipped to the map. */
void kd_cn_splat(float *heat, int H, int W, int cx, int cy, int r);

/* One image's targets from its boxes (pixels) at stride S: heat [K,H,W]
 * (zeroed, then splatted with radius max(0, int(kd_cn_radius(ceil h,
 * ceil w, 0.7))) in output units), and per object its peak cell ind =
 * cy*W + cx, its class, size and offset targets.  Objects whose w or h is 0 are skipped.  Returns the number of
 * objects written (at most max_obj). */
typedef struct {
    int32_t ind, cls;
    float wh[2], off[2];
} kd_cn_obj;
int kd_cn_targets(const float *boxes, const int32_t *labels, int64_t nbox, int K, int H, int W, int S,
                  float *heat, kd_cn_obj *obj, int max_obj);

/* ---- losses; every one returns the loss and ACCUMULATES its gradient
 * (times weight) into d (may be NULL) ---- */

/* Penalty-reduced focal loss (alpha 2, beta 4) of heatmap logits x [n]
 * against gt [n]: p = clamp(sigmoid(x), 1e-4, 1 - 1e-4) (no gradient where
 * clamped); positives gt == 1; divided by the number of positives (when
 * there are none, the negative term alone). */
double kd_cn_focal(const float *x, const float *gt, size_t n, float weight, float *d);
/* CenterNet's RegL1Loss over a batch: pred [N,2,H,W]; for each object of
 * image i (objects of image i are obj[off[i] .. off[i+1]-1]) the L1
 * distance of pred at its peak to its target (which = 0: wh, 1: offset),
 * summed and divided by 2 * objects + 1e-4. */
double kd_cn_reg_l1(const float *pred, int N, int H, int W, const kd_cn_obj *obj, const int *off, int which,
                    float weight, float *d);
/* Mean per-pixel cross-entropy of logits [N,C,H,W] against labels [N,H,W]
 * (0..C-1). */
double kd_seg_ce(const float *logits, const uint8_t *labels, int N, int C, int H, int W, float weight, float *d);
/* The same of logits [N,C,h,w] bilinearly upsampled (kd_bilinear_resize)
 * to the labels' [N,H,W], as the masks are made from them: scratch up and
 * dup hold N*C*H*W floats each; d [N,C,h,w] accumulates. */
double kd_seg_ce_up(const float *logits, int N, int C, int h, int w, const uint8_t *labels, int H, int W,
                    float weight, float *d, float *up, float *dup);

/* ---- decoding ---- */

typedef struct {
    float x, y, w, h, score;
    int32_t cls;
} kd_cn_det;

/* Peaks of one image: sigmoid of heat logits [K,H,W] kept where equal to
 * the max of their 3x3 neighbourhood (max_pool2d(3, 1, 1)); the best topk
 * by score (ties: lower index k*H*W + y*W + x first); boxes from size wh
 * [2,H,W] and offset off [2,H,W] at the peak, times S, width and height
 * clamped at 0, clipped to the img_w x img_h image.  scratch holds K*H*W
 * floats and K*H*W int32.  Returns the number of detections (<= topk). */
int kd_cn_decode(const float *heat, const float *wh, const float *off, int K, int H, int W, int S, int img_h,
                 int img_w, int topk, kd_cn_det *out, float *scratch, int32_t *iscratch);

/* ---- ops ---- */

/* Nearest x2 upsampling x [N,C,H,W] -> y [N,C,2H,2W]; backward accumulates. */
void kd_up2_forward(int N, int C, int H, int W, const float *x, float *y);
void kd_up2_backward(int N, int C, int H, int W, const float *dy, float *dx);
/* Bilinear resizing of x [C,H,W] to y [C,Ho,Wo], align_corners=False (as
 * F.interpolate), for the masks' logits. */
void kd_bilinear_resize(int C, int H, int W, const float *x, int Ho, int Wo, float *y);
/* Its backward: dx [C,H,W] accumulates the gradient of dy [C,Ho,Wo]. */
void kd_bilinear_resize_backward(int C, int H, int W, const float *dy, int Ho, int Wo, float *dx);
/* Argmax over channels of x [C,HW] into u8 labels. */
void kd_argmax_u8(int C, int HW, const float *x, uint8_t *out);

/* ---- the head network ---- */

/* nup x (nearest x2 + 3x3 conv (no bias) + BN + ReLU) from the stage map
 * (C channels) to `up` channels, then four heads 3x3 conv + ReLU + 1x1
 * conv of `hc` hidden channels: hm (K), wh (2), reg (2), seg (K+1).
 *
 * With a skip map (sC > 0: a finer backbone stage, sC x sh x sw) the masks
 * come from FCN's skip architecture (Long et al. 2015): a fifth head of the
 * same form on the skip map, "skip" (K+1), added to the seg head's logits
 * bilinearly upsampled to sh x sw.  The coarse logits carry the class, the
 * fine ones the outline that a stride-S map cannot draw. */
typedef struct {
    int C, h, w;   /* the stage map's channels and size at the prepared input */
    int nup, up, hc, K;
    int maxn;
    int sC, sh, sw; /* the skip map's channels and size (sC 0: no skip) */
} kd_dethead_opts;

enum { KD_DH_HM, KD_DH_WH, KD_DH_REG, KD_DH_SEG, KD_DH_NHEADS };

typedef struct kd_dethead kd_dethead;

/* Layout of the parameters and buffers (names "up.I.conv.weight",
 * "up.I.bn.weight", "hm.0.weight", "hm.2.bias", ...); allocated zero. */
kd_dethead *kd_dethead_new(const kd_dethead_opts *o);
void kd_dethead_free(kd_dethead *h);
/* PyTorch's default Conv2d initialisation (kaiming_uniform a=sqrt(5),
 * bias U(+-1/sqrt(fan_in))), except the heads' last 1x1 weights: normal
 * with std 0.001; BN weight 1, bias 0, running var 1; the heatmap's last
 * bias -2.19 (CenterNet), drawn from seed. */
void kd_dethead_init(kd_dethead *h, uint64_t seed);
kd_slab *kd_dethead_params(kd_dethead *h);
kd_slab *kd_dethead_buffers(kd_dethead *h); /* BN running mean/var (p only) */
const kd_dethead_opts *kd_dethead_opts_of(const kd_dethead *h);
/* x [n,C,h,w] (and skip [n,sC,sh,sw], NULL without one) -> the heads'
 * outputs [n,Ck,H,W] (H = h * 2^nup) and the masks' logits. */
int kd_dethead_forward(kd_dethead *h, const float *x, const float *skip, int n, int train);
/* BN statistics of the upsampling path over every replica's batch
 * (kd_bn_forward_train_sync; NULL: this batch alone).  0, -1 out of memory. */
int kd_dethead_set_bn_sync(kd_dethead *h, kd_bn_sum_fn sum);
const float *kd_dethead_out(const kd_dethead *h, int head);
float *kd_dethead_dout(kd_dethead *h, int head); /* gradients of the outputs, zeroed by forward */
/* The masks' logits [n,K+1,Hs,Ws]: the seg head's output (Hs x Ws = H x W)
 * or, with a skip, their sum at the skip map's size; and their gradient
 * (zeroed by forward; with a skip, set it rather than dout(KD_DH_SEG)). */
const float *kd_dethead_seg(const kd_dethead *h, int *Hs, int *Ws);
float *kd_dethead_dseg(kd_dethead *h);
/* Backward of the last (train) forward: parameter gradients accumulate,
 * dx [n,C,h,w] and dskip [n,sC,sh,sw] (either may be NULL) accumulate the
 * maps' gradients. */
int kd_dethead_backward(kd_dethead *h, float *dx, float *dskip);
int kd_dethead_out_size(const kd_dethead *h, int *H, int *W);

/* ---- scene augmentation ---- */

/* Horizontal flip (when flip) then scaling by s about the image centre of
 * one scene: img [H,W,C] u8 bilinear (rounded), mask [H,W] nearest (may be
 * NULL), zero outside the source; boxes scaled, clipped to the image, and
 * dropped when narrower or lower than 1 pixel.  Returns the boxes kept. */
int kd_scene_aug(const uint8_t *img, const uint8_t *mask, int H, int W, int C, const float *boxes,
                 const int32_t *labels, int nb, int flip, float s, uint8_t *oimg, uint8_t *omask, float *oboxes,
                 int32_t *olabels);

#endif
