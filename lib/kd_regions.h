/* kd_regions — multi-scale window pooling of a map (MSD's decoupling,
 * METHODS.md "MSD"): average a map [B,C,h,w] over the windows of several
 * scales, giving R region descriptors per image, out [B,R,C].
 *
 * Windows of scale s (1 <= s <= min(h,w)):
 *  - stride 0: PyTorch's adaptive_avg_pool2d cells, s x s of them; cell i
 *    spans rows [floor(i*h/s), ceil((i+1)*h/s)) (likewise columns with w),
 *    so a 7x7 map works at every scale (neighbouring cells may share a row);
 *  - stride S > 0: overlapping sliding windows of kh x kw = ceil(h/s) x
 *    ceil(w/s), the top-left corner at (a*S, b*S) for a = 0 .. (h-kh)/S,
 *    b = 0 .. (w-kw)/S (floor division: a window never leaves the map and
 *    the last rows/columns are dropped when S does not divide h-kh), i.e.
 *    avg_pool2d(kernel (kh,kw), stride S, no padding, ceil_mode off).
 *    Scale 1 is still the one global window.
 * Regions are numbered by scale in the order given, windows row-major
 * within a scale.  The first scale must be 1: region 0 is the global
 * average, the reference of kd_regions_categorise.
 *
 * The kernels are plain loops (they are their own naive reference); tests:
 * tests/unit/test_regions.c against tests/gen/regions.py (PyTorch). */
#ifndef KD_REGIONS_H
#define KD_REGIONS_H

enum { KD_REGIONS_MAX_SCALES = 8 };

typedef struct kd_regions {
    int nscales;
    int scales[KD_REGIONS_MAX_SCALES];
    int stride; /* 0: adaptive cells; > 0: sliding windows moved by stride */
} kd_regions;

/* R, the regions per image of an h x w map (21 for scales 1,2,4, stride 0);
 * -1 with kd_err when r does not fit the map (no scale, more than
 * KD_REGIONS_MAX_SCALES, a first scale other than 1, a scale < 1 or larger
 * than min(h,w), a negative stride). */
int kd_regions_count(const kd_regions *r, int h, int w);

/* The regions of region's scale: [*first, *first + *count).  -1 with kd_err
 * when r is invalid for the map or region is not in [0, R). */
int kd_regions_scale_span(const kd_regions *r, int h, int w, int region, int *first, int *count);

/* map [B,C,h,w] -> out [B,R,C], each the mean over its window.
 * r must be valid for h x w (kd_regions_count >= 0). */
void kd_regions_forward(const kd_regions *r, const float *map, int B, int C, int h, int w, float *out);

/* dout [B,R,C] -> dmap [B,C,h,w]: ACCUMULATES dout/area into every
 * position of each window. */
void kd_regions_backward(const kd_regions *r, const float *dout, int B, int C, int h, int w, float *dmap);

/* MSD's categorisation (as SDD's): z [B,R,K] region logits -> wt [B,R]:
 * 1 where region r's argmax equals region 0's (consistent; region 0 itself
 * is always 1), w_comp otherwise (complementary).  Argmax ties go to the
 * lower class; a NaN is never the maximum (an all-NaN row's argmax is 0). */
void kd_regions_categorise(const float *z, int B, int R, int K, float w_comp, float *wt);

#endif
