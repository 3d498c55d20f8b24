/* kd_filter — the pieces of a stream filter's loop (lib/kd_filter.h). */
#include "kd_filter.h"

#include <string.h>
#include <unistd.h>

#include "kd_cli.h"
#include "kd_err.h"

int kd_filter_open(const char *in, const char *out, int deflate, kd_reader **rd, kd_writer **wr)
{
    if (!strcmp(out, "-") && isatty(1)) {
        kd_err_set("refusing to write a binary stream to a terminal; use -o FILE or a pipe");
        return -2;
    }
    *rd = kd_reader_open(in);
    if (!*rd)
        return -1;
    *wr = kd_writer_open(out, deflate ? KD_W_DEFLATE : 0);
    if (!*wr) {
        kd_reader_close(*rd);
        *rd = NULL;
        return -1;
    }
    return 0;
}

int64_t kd_filter_frames_due(const kd_frame *f)
{
    int64_t ep = kd_frame_meta_i64(f, KD_META_EPOCHS, -1), nb = kd_frame_meta_i64(f, KD_META_BATCHES, -1);
    int64_t e0 = kd_frame_meta_i64(f, KD_META_EPOCH, 0), b0 = kd_frame_meta_i64(f, KD_META_BATCH, 0);
    return ep > 0 && nb > 0 && e0 >= 0 && e0 < ep && b0 >= 0 ? (ep - e0) * nb - b0 : -1;
}

int kd_filter_views(const kd_frame *f, char (*names)[KD_NAME_MAX], int max)
{
    int n = 0;
    for (int i = 0; i < f->n && n < max; i++) {
        char pre[2];
        kd_name_family fam;
        int idx;
        if (!kd_name_split(f->t[i].name, pre, sizeof pre, &fam, &idx) && fam == KD_NAME_VIEW && !pre[0])
            snprintf(names[n++], KD_NAME_MAX, "%s", f->t[i].name);
    }
    return n;
}

void kd_filter_report(const char *out, long long frames, long long images, double t0)
{
    if (!strcmp(out, "-"))
        return;
    kd_json j;
    kd_json_begin(&j, stdout);
    kd_json_int(&j, "frames", frames);
    kd_json_int(&j, "images", images);
    kd_json_num(&j, "images_per_s", images / (kd_now() - t0 + 1e-9));
    kd_json_end(&j);
}
