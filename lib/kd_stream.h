/* kd_stream — the kdpipe tensor stream (man/man5/kdt.5 has the byte layout).
 *
 * A stream is a sequence of frames.  Every frame starts with a magic and a
 * version, is self-describing, carries a CRC32 and may be deflated.  Clean
 * end of stream is EOF on a frame boundary; anything else is an error that
 * names the byte offset.  Sizes are validated before anything is allocated. */
#ifndef KD_STREAM_H
#define KD_STREAM_H

#include <stdint.h>
#include <stdio.h>

#include "kd_tensor.h"

#define KD_STREAM_VERSION 1
/* Largest frame accepted by a reader (payload bytes after inflation). */
#define KD_STREAM_MAX_FRAME ((uint64_t)4 << 30)

typedef struct kd_reader kd_reader;

/* path "-" is stdin.  NULL with kd_err on failure. */
kd_reader *kd_reader_open(const char *path);
/* Wrap an already open FILE (not closed by kd_reader_close); name is used in messages. */
kd_reader *kd_reader_fopen(FILE *f, const char *name);
/* 1: a frame was read into f; 0: clean end of stream; -1: error (kd_err
 * says "NAME: frame K at byte OFFSET: problem"). */
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
/* Flush (fsync + rename for files).  Returns -1 with kd_err on failure, in
 * which case a file output has been removed. */
int kd_writer_close(kd_writer *w);
/* Discard: remove the temporary file, free.  On standard output, where
 * nothing can be removed, end with an incomplete frame header so that the
 * consumer fails instead of seeing a clean end of stream. */
void kd_writer_abort(kd_writer *w);

/* Encode one frame into memory (for tests and tools): *buf is realloc'ed. */
int kd_frame_encode(const kd_frame *f, int flags, uint8_t **buf, size_t *len, size_t *cap);

#endif
