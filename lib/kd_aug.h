/* kd_aug — image augmentations as pure functions over float images.
 *
 * An image is planar float32 [C,H,W] (C = 1 or 3), values in [0, 1] until
 * normalisation.  Every operation follows the definition of torchvision
 * 0.14's tensor path (torchvision/transforms/functional_tensor.py), so the
 * same parameters give the same pixels within float rounding; the fixtures in
 * tests/fixtures/aug_ops.h5 (tests/gen/aug.py) check this.  Where kdpipe
 * chooses differently (the blur kernel size rule) augment(1) says so.
 *
 * Randomness lives in kd_aug_policy.h: these functions take the sampled
 * parameters and never draw. */
#ifndef KD_AUG_H
#define KD_AUG_H

#include <stdint.h>

/* A crop box: rows top..top+h-1, columns left..left+w-1 of the source. */
typedef struct {
    int top, left, h, w;
} kd_box;

/* u8 interleaved [H,W,C] -> float planar [oc,H,W] in [0,1] (x/255).
 * C -> oc: 1->1, 3->3, 1->3 (replicated), 3->1 (ITU-R 601-2 luma as
 * torchvision's rgb_to_grayscale). */
void kd_aug_from_u8(const uint8_t *src, int H, int W, int C, float *dst, int oc);

/* Crop box of src [C,H,W] and resize it to [C,oh,ow] by bilinear
 * interpolation with align_corners=False and no antialiasing, as
 * torch.nn.functional.interpolate (torchvision resized_crop on tensors).
 * The box must lie inside the image. */
void kd_aug_resized_crop(const float *src, int C, int H, int W, kd_box box, float *dst, int oh, int ow);
/* The same straight from u8 interleaved [H,W,C] (values x/255), without a
 * separate conversion pass; hflip != 0 also mirrors the output (bit for bit
 * what kd_aug_hflip would give).  -1 (nothing done) if ow > KD_AUG_MAXW,
 * C > 3 or the box is wider than 4*KD_AUG_MAXW. */
#define KD_AUG_MAXW 4096
int kd_aug_resized_crop_u8(const uint8_t *src, int C, int H, int W, kd_box box, float *dst, int oh, int ow,
                           int hflip);
/* Naive reference of the same (one output pixel at a time, double). */
void kd_aug_resized_crop_ref(const float *src, int C, int H, int W, kd_box box, float *dst, int oh, int ow);

/* Plain crop; parts of the box outside the image are zero (torchvision crop
 * pads with 0), which is also pad + random crop: box in unpadded coordinates
 * with top/left possibly negative. */
void kd_aug_crop(const float *src, int C, int H, int W, kd_box box, float *dst);
/* torchvision center_crop box of th x tw in an H x W image (may extend
 * outside when the image is smaller; kd_aug_crop fills zeros). */
kd_box kd_aug_center_box(int H, int W, int th, int tw);
/* torchvision resize(size=[s]): the shorter side becomes s, the longer
 * int(s * long / short). */
void kd_aug_resize_short(int H, int W, int s, int *nh, int *nw);

/* Colour: n = H*W pixels per channel.  In place; results clamped to [0,1]. */
void kd_aug_brightness(float *img, int C, int n, float f);
void kd_aug_contrast(float *img, int C, int n, float f);
void kd_aug_saturation(float *img, int C, int n, float f); /* identity if C == 1 */
void kd_aug_hue(float *img, int C, int n, float h);        /* h in [-0.5,0.5]; identity if C == 1 */
void kd_aug_hue_ref(float *img, int C, int n, float h);    /* naive reference (branches, libm) */
/* Every channel becomes the luma (C == 3); identity for C == 1. */
void kd_aug_grayscale(float *img, int C, int n);

/* The kdpipe kernel size for sigma: 2*ceil(3 sigma)+1, at least 3, reduced
 * (keeping it odd) until its radius is below min(H, W) as reflect padding
 * requires. */
int kd_aug_blur_ksize(float sigma, int H, int W);
/* Gaussian blur with a k x k kernel (k odd) of this sigma, reflect padding
 * (torchvision gaussian_blur); separable.  tmp holds C*H*W floats. */
void kd_aug_blur(float *img, int C, int H, int W, int k, float sigma, float *tmp);
/* Naive reference: the 2-D kernel (outer product) applied directly. */
void kd_aug_blur_ref(const float *src, int C, int H, int W, int k, float sigma, float *dst);

void kd_aug_hflip(float *img, int C, int H, int W);
/* (x - mean[c]) / std[c] */
void kd_aug_normalize(float *img, int C, int n, const float *mean, const float *std);

#endif
