/* kd_stream — the kdpipe tensor stream (man/man5/kdt.5 has the byte layout).
 *
 * A stream is a sequence of frames.  Every frame starts with a magic and a
 * version, is self-describing, carries a CRC32 and may be deflated.  A
 * stream ends with an end marker (written by kd_writer_close) followed by
 * EOF; EOF without it, or anywhere else, is an error.  Sizes are validated before anything is allocated. */
#ifndef KD_STREAM_H
#define KD_STREAM_H

#include <stdint.h>
#include <stdio.h>

#include "kd_tensor.h"

#define KD_STREAM_VERSION 1
/* Largest frame the format allows (payload bytes after inflation). */
#define KD_STREAM_MAX_FRAME ((uint64_t)4 << 30)
/* Largest frame a reader accepts, in MB: KDPIPE_MAX_FRAME_MB, default 1024. */
#define KD_STREAM_BOUND_ENV "KDPIPE_MAX_FRAME_MB"
#define KD_STREAM_BOUND_MB 1024

typedef struct kd_reader kd_reader;

/* path "-" is stdin.  NULL with kd_err on failure. */
kd_reader *kd_reader_open(const char *path);
/* Wrap an already open FILE (not closed by kd_reader_close); name is used in messages. */
kd_reader *kd_reader_fopen(FILE *f, const char *name);
/* 1: a frame was read into f; 0: the end marker, then EOF; -1: error
 * (kd_err says "NAME: frame K at byte OFFSET: problem", or "NAME: the stream
 * ended without its end marker (the writer died?) after N frames"). */
int kd_reader_next(kd_reader *r, kd_frame *f);
/* Byte offset of the next frame. */
uint64_t kd_reader_offset(const kd_reader *r);
void kd_reader_close(kd_reader *r);

enum { KD_W_DEFLATE = 1 };

typedef struct kd_writer kd_writer;

/* path "-" is stdout.  A file is written under a temporary name in the same
 * directory and renamed into place by kd_writer_close(), so a failed run
 * leaves nothing half-written. */
kd_writer *kd_writer_open(const char *path, int flags);
int kd_writer_put(kd_writer *w, const kd_frame *f);
/* Write the end marker, flush (fsync + rename for files).  Returns -1 with kd_err on failure, in
 * which case a file output has been removed. */
int kd_writer_close(kd_writer *w);
/* Discard: remove the temporary file, free.  No end marker is written, so
 * a consumer of standard output fails instead of seeing a complete stream. */
void kd_writer_abort(kd_writer *w);
/* After kd_writer_put or kd_writer_close failed: abort w (NULL after a
 * close) and exit 1, quietly when the reader of the stream has gone (EPIPE,
 * with SIGPIPE ignored: nothing to report to anyone), else with the error. */
_Noreturn void kd_writer_fail(kd_writer *w);

/* Encode one frame into memory (for tests and tools): *buf is realloc'ed. */
int kd_frame_encode(const kd_frame *f, int flags, uint8_t **buf, size_t *len, size_t *cap);
/* The end marker after `frames` frames into buf; returns its length. */
#define KD_STREAM_END_MAX 80
size_t kd_stream_end_encode(uint64_t frames, uint8_t *buf);

#endif
