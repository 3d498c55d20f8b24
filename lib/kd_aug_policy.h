/* kd_aug_policy — named augmentation recipes (MoCo v2, SimCLR,
 * crop+flip, eval), the sampling of one view's parameters from a kd_rng, and
 * the application of those parameters to a u8 image with kd_aug.
 *
 * Sampling and application are separate so that a test can apply given
 * parameters (the fixtures of tests/gen/aug.py) and so that the draws are
 * documented in one place (augment(1), RANDOMNESS).  All draws of one view
 * come from the kd_rng passed in, in a fixed order, whether or not an
 * operation ends up applied. */
#ifndef KD_AUGMENT_POLICY_H
#define KD_AUGMENT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "kd_aug.h"
#include "kd_rng.h"

typedef enum {
    KD_AUG_NONE = 0,   /* resize to the output size if it differs, normalise */
    KD_AUG_MOCOV2,     /* RRC 0.2-1, jitter .4/.4/.4/.1 p .8, gray .2, blur .1-2 p .5, flip */
    KD_AUG_SIMCLR,     /* RRC 0.08-1, jitter .8/.8/.8/.2 p .8, gray .2, blur .1-2 p .5, flip */
    KD_AUG_CROPFLIP,   /* pad 4 (zeros), random crop, flip */
    KD_AUG_EVAL        /* resize shorter side, centre crop */
} kd_aug_kind;

typedef struct {
    kd_aug_kind kind;
    int oh, ow, oc;        /* output size and channels */
    int rrc;               /* RandomResizedCrop on/off */
    float scale[2], ratio[2];
    float jitter[4];       /* brightness, contrast, saturation, hue strengths */
    float jitter_p;
    float gray_p;
    float sigma[2];
    float blur_p;
    float flip_p;
    int pad;               /* crop-flip: zero padding on every side */
    int resize;            /* eval: shorter side before the centre crop (0: max(oh, ow)) */
    int normalize;
    float mean[3], std[3];
} kd_aug_policy;

/* The parameters of one view, as sampled (or given by a test). */
typedef struct {
    int pre_h, pre_w;      /* resize the whole image to this first (0: no) */
    kd_box box;            /* then crop this box ... */
    int resize;            /* ... and resize it to oh x ow (else box is oh x ow) */
    int jitter;            /* colour jitter applied */
    int order[4];          /* 0 brightness, 1 contrast, 2 saturation, 3 hue */
    float factor[4];       /* brightness, contrast, saturation factors; hue shift */
    int gray;
    int blur, ksize;
    float sigma;
    int flip;
} kd_aug_params;

const char *kd_aug_kind_name(kd_aug_kind k);
/* -1 if unknown */
int kd_aug_kind_parse(const char *s);

/* Defaults of a named policy for an output of oh x ow with oc channels;
 * mean/std 0/1 until the caller sets them. */
void kd_aug_policy_init(kd_aug_policy *p, kd_aug_kind k, int oh, int ow, int oc);
/* Validate against an input of H x W x C: ranges of every parameter, crop
 * sizes.  -1 with kd_err naming the parameter. */
int kd_aug_policy_check(const kd_aug_policy *p, int H, int W, int C);

/* torchvision RandomResizedCrop.get_params: 10 attempts with an area
 * uniform in scale and a log-uniform aspect ratio, then the centre fallback. */
kd_box kd_aug_rrc_box(kd_rng *r, int H, int W, const float scale[2], const float ratio[2]);

void kd_aug_sample(const kd_aug_policy *p, kd_rng *r, int H, int W, kd_aug_params *v);
/* Floats of scratch kd_aug_apply needs for an H x W input. */
size_t kd_aug_scratch_floats(const kd_aug_policy *p, int H, int W);
/* src u8 [H,W,C] -> dst float [oc,oh,ow], normalised if p->normalize. */
void kd_aug_apply(const kd_aug_policy *p, const kd_aug_params *v, const uint8_t *src, int H, int W, int C,
                  float *dst, float *scratch);
/* Sample + apply. */
void kd_aug_view(const kd_aug_policy *p, kd_rng *r, const uint8_t *src, int H, int W, int C, float *dst,
                 float *scratch);

#endif
