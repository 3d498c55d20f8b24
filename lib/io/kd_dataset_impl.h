/* Private to lib/io: the dataset file handle, shared by kd_dataset.c
 * (images, labels, statistics) and kd_dataset_det.c (boxes, masks). */
#ifndef KD_DATASET_IMPL_H
#define KD_DATASET_IMPL_H

#include "kd_dataset.h"
#include "kd_h5.h"

struct kd_dataset_file {
    kd_h5 h5;
    kd_dataset_info info;
};

/* Checks the detection datasets' shapes against the images' and fills
 * info->has_boxes, has_masks, nboxes. */
int kd_dataset_open_det(kd_dataset_file *f);
/* Writes the detection datasets of d (nothing when d->boxes is NULL). */
int kd_dataset_write_det(const kd_dataset *d, kd_h5 *h);

#endif
