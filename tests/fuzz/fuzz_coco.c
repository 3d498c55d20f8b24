/* fuzz_coco — the COCO JSON readers (kd_coco.h) and the evaluation of what
 * they accept.  Input: annotations JSON, then optionally a line "----" and
 * detections in any form kd_coco_load_dets takes (results JSON, a stream,
 * HDF5). */
#include <string.h>

#include "scratch.h"
#include "kd_coco.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memmem(data, size, "\n----\n", 6);
    size_t ng = sep ? (size_t)(sep - data) : size;
    char gt[512], dt[512];
    fuzz_write("gt.json", data, ng, gt, sizeof gt);
    kd_coco c = {0};
    if (fuzz_note("gt", kd_coco_load_gt_json(&c, gt)) == 0 && sep) {
        fuzz_write("dt.json", sep + 6, size - ng - 6, dt, sizeof dt);
        if (fuzz_note("dets", kd_coco_load_dets(&c, dt)) == 0 && fuzz_note("prepare", kd_coco_prepare(&c)) == 0) {
            kd_coco_result r;
            if (fuzz_note("evaluate", kd_coco_evaluate(&c, &r)) == 0)
                kd_coco_result_free(&r);
        }
    }
    kd_coco_free(&c);
    return 0;
}
