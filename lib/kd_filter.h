/* kd_filter — what the stream-filter programs (teacher-extract, aggregate)
 * share around their frame loop: opening the input and output streams, the
 * run's length for the progress line, the views of a frame, the closing
 * JSON report. */
#ifndef KD_FILTER_H
#define KD_FILTER_H

#include <stdint.h>

#include "kd_names.h"
#include "kd_stream.h"
#include "kd_tensor.h"

/* Open in ("-": stdin) and out ("-": stdout, deflated frames with deflate).
 * 0; -2 with kd_err when out is "-" and stdout a terminal (a usage error:
 * nothing is opened); -1 with kd_err when a stream cannot be opened
 * (nothing is left open). */
int kd_filter_open(const char *in, const char *out, int deflate, kd_reader **rd, kd_writer **wr);

/* The frames the run holds from this one on, when its metadata announces
 * the run's length (augment's epochs/batches), else -1. */
int64_t kd_filter_frames_due(const kd_frame *f);

/* The names of f's view tensors (viewN, no prefix) in frame order, at most
 * max of them; returns how many. */
int kd_filter_views(const kd_frame *f, char (*names)[KD_NAME_MAX], int max);

/* The JSON line {"frames":..,"images":..,"images_per_s":..} on stdout,
 * unless out is "-" (stdout is then the stream). */
void kd_filter_report(const char *out, long long frames, long long images, double t0);

#endif
