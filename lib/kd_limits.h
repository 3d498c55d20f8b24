/* kd_limits — the memory bounds every program honours, each set by an
 * environment variable in MB, so that a small hostile input cannot make a
 * program allocate gigabytes it was not asked for.
 *
 *   KDPIPE_MAX_FRAME_MB   a stream frame's raw payload (kd_stream.h), 1024
 *   KDPIPE_MAX_MEMORY_MB  a model's activations, gradients and workspace
 *                         for one planned batch (kd_model_prepare), 8192
 *   KDPIPE_MAX_IMAGE      the larger side of a model's input, in pixels,
 *                         1024 (kd_model_prepare) */
#ifndef KD_LIMITS_H
#define KD_LIMITS_H

#define KD_MEMORY_BOUND_ENV "KDPIPE_MAX_MEMORY_MB"
#define KD_MEMORY_BOUND_MB 8192L
#define KD_IMAGE_BOUND_ENV "KDPIPE_MAX_IMAGE"
#define KD_IMAGE_BOUND_PX 1024L

/* The value of environment variable env, a whole number of units (MB,
 * pixels) in [1, max]; def when unset or empty; -1 (error set) otherwise. */
long kd_env_bound(const char *env, const char *unit, long def, long max);

/* KDPIPE_MAX_MEMORY_MB, KDPIPE_MAX_IMAGE; or -1 (error set). */
long kd_memory_bound_mb(void);
long kd_image_bound_px(void);

#endif
