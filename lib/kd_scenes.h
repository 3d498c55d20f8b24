/* kd_scenes — synthetic detection and segmentation scenes: objects of a
 * dataset (Fashion-MNIST by default) pasted on a black canvas.
 *
 * Scene i draws from its own random stream kd_rng_make(seed, KD_SCENES_KEY,
 * i), so the scenes do not depend on the number of threads.  It holds
 * K ~ uniform{min..max} objects; each placement draws an object (uniform
 * over the source images), a scale s ~ U[lo, hi) (the object becomes
 * round(s h) x round(s w) pixels, bilinear as kd_aug_resized_crop_u8,
 * rounded to u8) and a position (uniform, the scaled object inside the
 * canvas).  Its foreground is the scaled pixels >= fg_threshold, its box
 * the tight box of that foreground (not the pasted square).  A placement is
 * drawn again (up to KD_SCENES_TRIES times, after which the object is
 * dropped and counted) when its foreground is empty, when its box has IoU
 * > max_overlap with the box of an object already placed, or when it would
 * leave less than half of an earlier object's foreground visible.
 *
 * Compositing, in placement order: foreground pixels replace the canvas
 * and write class+1 into the mask (later objects over earlier ones);
 * pixels below the threshold take max(canvas, object), so soft edges stay
 * soft and never darken what lies beneath.  Boxes are those of the pasted
 * objects, even where a later object covers part of one. */
#ifndef KD_SCENES_H
#define KD_SCENES_H

#include <stdint.h>

#include "kd_dataset.h"

#define KD_SCENES_KEY 0x5CE7E5ull
#define KD_SCENES_TRIES 100
#define KD_SCENES_MAX_OBJECTS 64

typedef struct {
    int h, w;                     /* canvas */
    int min_objects, max_objects; /* 0 <= min <= max <= KD_SCENES_MAX_OBJECTS */
    float scale_lo, scale_hi;     /* 0 < lo <= hi */
    float max_overlap;            /* IoU bound between boxes, in [0, 1] */
    int fg_threshold;             /* 1..255 */
    uint64_t seed;
    int threads;                  /* 0: OpenMP's default */
} kd_scenes_opts;

#define KD_SCENES_DEFAULTS                                                                                  \
    {.h = 96, .w = 96, .min_objects = 1, .max_objects = 4, .scale_lo = 0.75f, .scale_hi = 2.0f,             \
     .max_overlap = 0.3f, .fg_threshold = 32}

/* n scenes from the objects (images and labels) of src into out: images
 * [n,h,w,src->c], boxes, box_labels, box_offsets, masks, nclasses and
 * class names (borrowed from src), allocated here (kd_scenes_free).
 * *dropped: placements given up after KD_SCENES_TRIES draws.  -1 with kd_err
 * when the options do not fit the source (an object scaled by hi larger
 * than the canvas, more than 254 classes, no labels). */
int kd_scenes_make(const kd_dataset *src, int64_t n, const kd_scenes_opts *o, kd_dataset *out, int64_t *dropped);
void kd_scenes_free(kd_dataset *out);

#endif
