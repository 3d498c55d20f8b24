/* kd_dataset — writing and reading dataset files (kind "dataset",
 * man/man5/kdpipe-h5.5): /images u8 [N,H,W,C], /labels i32 [N], class
 * names, source, and per-channel mean/std of pixel/255.
 *
 * Every program that reads a dataset file reads it through
 * kd_dataset_open / kd_dataset_read_rows, normalises with kd_dataset_norm
 * and checks labels with kd_dataset_check_labels, so a file means the same
 * thing to all of them. */
#ifndef KD_DATASET_H
#define KD_DATASET_H

#include <stdint.h>

typedef struct {
    int64_t n;
    int h, w, c;
    uint8_t *images; /* [n,h,w,c] */
    int32_t *labels; /* [n] or NULL */
    int nclasses;
    char **classes;  /* nclasses names (may be NULL: "0".."K-1" are written) */
    const char *source;
    /* Detection datasets (man/man5/kdpipe-h5.5); boxes NULL otherwise.
     * Boxes of image i are rows box_offsets[i] .. box_offsets[i+1]-1. */
    int64_t nboxes;
    float *boxes;         /* [nboxes,4] x, y, width, height in pixels */
    int32_t *box_labels;  /* [nboxes] */
    int64_t *box_offsets; /* [n+1] */
    uint8_t *masks;       /* [n,h,w] class+1 of each pixel, 0 background; may be NULL */
    const char *scenes;   /* the "scenes" attribute (how they were made); may be NULL */
} kd_dataset;

/* Validates labels in [0, nclasses) (and boxes, offsets and masks by the
 * rules of kd_dataset_check_boxes / kd_dataset_check_masks), computes
 * mean/std, writes atomically. */
int kd_dataset_write(const kd_dataset *d, const char *path);

/* Per-channel mean and std of pixel/255 (population std). */
void kd_dataset_stats(const uint8_t *images, int64_t npix, int c, float *mean, float *std);

/* ---- reading ---- */

/* Labels are in [0, nclasses) when the file names its classes, else in
 * [0, KD_DATASET_MAX_CLASSES). */
#define KD_DATASET_MAX_CLASSES 100000
/* Images are 1..KD_DATASET_MAX_SIDE pixels high and wide. */
#define KD_DATASET_MAX_SIDE 16384

/* What kd_dataset_open found, already validated: /images is u8 of rank 4
 * with n >= 1 rows of h x w (1..16384) x c (1..4) pixels; /labels, when
 * present, is rank 1 with at least n entries; the mean and std attributes,
 * when present, hold 1 or c values (nmean/nstd: how many; 0 = absent). */
typedef struct {
    const char *path; /* as given to kd_dataset_open */
    int64_t n;
    int h, w, c;
    int has_labels;
    int nclasses;     /* entries of the "classes" attribute; 0 = not named */
    int nmean, nstd;
    float mean[4], std[4];
    /* detection datasets: /boxes, /box_labels, /box_offsets all present
     * with shapes [M,4], [M], [n+1] (one or two of them alone is an error);
     * /masks u8 [n,h,w] optional */
    int has_boxes, has_masks;
    int64_t nboxes; /* M */
} kd_dataset_info;

typedef struct kd_dataset_file kd_dataset_file;

/* Opens path for reading and fills *info.  NULL (kd_err: "path: problem")
 * when the file is missing, not a kdpipe dataset file, or fails the checks
 * above.  A handle is not thread-safe. */
kd_dataset_file *kd_dataset_open(const char *path, kd_dataset_info *info);
/* Rows [start, start+count) with 0 <= start, start+count <= n: images
 * (count*h*w*c bytes, HWC) and labels (count entries, checked by
 * kd_dataset_check_labels); either may be NULL.  labels must be NULL when
 * the file has none. */
int kd_dataset_read_rows(kd_dataset_file *f, int64_t start, int64_t count, uint8_t *images, int32_t *labels);
void kd_dataset_close(kd_dataset_file *f);
/* The class names (info.nclasses of them; free with kd_strv_free), or -1. */
int kd_dataset_classes(kd_dataset_file *f, char ***names);

/* The label rule: every y[i] in [0, nclasses) (nclasses <= 0: in [0,
 * KD_DATASET_MAX_CLASSES)); otherwise -1 with "path: row R: label L is out
 * of range [0, K)", R counted from first_row. */
int kd_dataset_check_labels(const char *path, const int32_t *y, int64_t n, int64_t first_row, int nclasses);

/* ---- detection datasets ---- */

/* Every box of a detection dataset, as kd_dataset_read_boxes returns them. */
typedef struct {
    int64_t n, m;     /* images, boxes */
    float *boxes;     /* [m,4] x, y, w, h */
    int32_t *labels;  /* [m] */
    int64_t *offsets; /* [n+1] */
    uint8_t *crowd;   /* [m]: /box_crowd, zeros when absent */
} kd_boxes;

/* The box rule, for writers and readers alike: offsets[0] = 0, offsets
 * never decrease, offsets[n] = m; every box finite with w, h >= 0 and inside
 * the h x w image (x >= 0, y >= 0, x + w <= w, y + h <= h); every label by
 * kd_dataset_check_labels' rule.  -1 with kd_err "path: ..." otherwise. */
int kd_dataset_check_boxes(const char *path, int64_t n, int h, int w, int nclasses, const float *boxes,
                           const int32_t *labels, const int64_t *offsets, int64_t m);
/* Mask values are 0 (background) or class+1: at most nclasses (255 when the
 * classes are not named).  first_row as in kd_dataset_check_labels. */
int kd_dataset_check_masks(const char *path, const uint8_t *masks, int64_t n, int h, int w, int64_t first_row,
                           int nclasses);

/* All boxes of a file with info.has_boxes, checked by the rule above
 * (free with kd_boxes_free). */
int kd_dataset_read_boxes(kd_dataset_file *f, kd_boxes *b);
void kd_boxes_free(kd_boxes *b);
/* Rows [start, start+count) of /masks (count*h*w bytes), checked. */
int kd_dataset_read_masks(kd_dataset_file *f, int64_t start, int64_t count, uint8_t *masks);

/* Normalisation statistics for out_channels (1 or 3) output channels. */
typedef struct {
    int nmean, nstd; /* 0: not given; 1: the same for every channel; else one per channel */
    float mean[3], std[3];
} kd_norm_overrides;

/* The one rule for mean/std, each taken separately:
 *  - given in ov (1 or out_channels values): used as given, 1 value for all
 *    channels;
 *  - else the file's attribute (1 value: all channels), carried to
 *    out_channels: 1 -> 3 repeats it, 3 -> 1 takes the luma (0.2989 R +
 *    0.587 G + 0.114 B; exact for the mean, an approximation for the std);
 *  - else an error naming the option to give.
 * Every std must be positive and every value finite.  Returns 0, -1 for a
 * problem with the file, -2 for a problem with the overrides (a usage
 * error); kd_err says which. */
int kd_dataset_norm(const kd_dataset_info *info, int out_channels, const kd_norm_overrides *ov, float *mean,
                    float *std);

#endif
