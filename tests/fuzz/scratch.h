/* scratch — what the harnesses share: the readers under test take paths,
 * so an input is written to a file in a private scratch directory (in
 * /dev/shm when it exists: no disk traffic per execution). */
#ifndef FUZZ_SCRATCH_H
#define FUZZ_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch directory, created on first use and removed at exit. */
const char *fuzz_dir(void);
/* fuzz_dir()/name holding data[0..size); returns its path (static buffer
 * per call site is the caller's: out gets it).  Intermediate directories of
 * name are created.  Aborts on failure: the harness itself is broken then. */
void fuzz_write(const char *name, const uint8_t *data, size_t size, char *out, size_t outlen);
/* With KD_FUZZ_VERBOSE set, "what: ok" or "what: <kd_err>" on stderr (is
 * a seed accepted?).  Returns rc. */
int fuzz_note(const char *what, int rc);
/* After an HDF5 reader: abort (a finding) if it left any HDF5 object open,
 * which would keep its file and memory held for the process's life. */
void fuzz_h5_ids(void);
/* Every frame of the stream in data[0..size), read with kd_reader until its
 * end marker or the first error (noted as what). */
void fuzz_read_stream(const uint8_t *data, size_t size, const char *what);
/* Remove everything under fuzz_dir() (between executions). */
void fuzz_clean(void);

#endif
