/* fuzz_dataset — opening a dataset file (kd_dataset.h) and reading what it
 * says it holds: rows and labels, class names, boxes and masks (bounded to
 * a few MB, as a program reads in slices), and the same file as COCO
 * ground truth (kd_coco_load_gt_h5). */
#include <stdlib.h>

#include "scratch.h"
#include "kd_coco.h"
#include "kd_dataset.h"
#include "kd_h5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write("d.h5", data, size, path, sizeof path);
    kd_dataset_info info;
    kd_dataset_file *f = kd_dataset_open(path, &info);
    fuzz_note("dataset", !f);
    if (f) {
        int64_t row = (int64_t)info.h * info.w * info.c, count = info.n < 4 ? info.n : 4;
        if (row * count <= (8 << 20)) {
            uint8_t *im = malloc((size_t)(row * count));
            int32_t *lb = info.has_labels ? malloc(sizeof *lb * (size_t)count) : NULL;
            if (im && (lb || !info.has_labels))
                fuzz_note("rows", kd_dataset_read_rows(f, info.n - count, count, im, lb));
            free(im);
            free(lb);
            if (info.has_masks && (int64_t)info.h * info.w * count <= (8 << 20)) {
                uint8_t *mk = malloc((size_t)info.h * info.w * (size_t)count);
                if (mk)
                    fuzz_note("masks", kd_dataset_read_masks(f, 0, count, mk));
                free(mk);
            }
        }
        char **names;
        if (info.nclasses > 0 && kd_dataset_classes(f, &names) >= 0)
            kd_strv_free(names, info.nclasses);
        kd_boxes b;
        if (info.has_boxes && fuzz_note("boxes", kd_dataset_read_boxes(f, &b)) == 0)
            kd_boxes_free(&b);
        float mean[3], std[3];
        kd_norm_overrides ov = {0};
        kd_dataset_norm(&info, 3, &ov, mean, std);
        kd_dataset_close(f);
        if (info.has_boxes) {
            kd_coco c = {0};
            fuzz_note("coco gt h5", kd_coco_load_gt_h5(&c, path));
            kd_coco_free(&c);
        }
    }
    fuzz_h5_ids();
    return 0;
}
