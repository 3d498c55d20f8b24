/* kd_file — outputs that appear whole or not at all: write to a temporary
 * name in the target's directory, fsync, rename.  "-" means stdout. */
#ifndef KD_FILE_H
#define KD_FILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4200]; /* "" for stdout */
} kd_file;

int kd_file_open(kd_file *o, const char *path);
/* fflush + fsync + rename (for files); -1 with kd_err on failure (the
 * temporary is removed). */
int kd_file_commit(kd_file *o);
void kd_file_abort(kd_file *o);
/* Before any work, for an output that is written under a temporary name and
 * renamed over path (every HDF5 output): refuse an existing path that is not
 * a regular file (a device, FIFO or directory would be replaced), and check
 * that the temporary can be created beside it.  -1 with kd_err. */
int kd_file_check_target(const char *path);

/* Temporaries in flight are removed on exit() and on SIGINT, SIGTERM, SIGHUP,
 * SIGXFSZ, SIGABRT, SIGSEGV and SIGBUS (the signal is then re-raised with its
 * default action).
 * kd_file_open and kd_h5_create register theirs; forget drops a name once it
 * has been renamed into place or removed. */
void kd_file_tmp_register(const char *tmp);
void kd_file_tmp_forget(const char *tmp);
/* unlink + forget */
void kd_file_tmp_remove(const char *tmp);

/* A temporary name beside path: "dir/.name.tmp.PID". */
void kd_file_tmpname(char *buf, size_t len, const char *path);
/* fsync a finished file by name and rename it over path. */
int kd_file_rename_synced(const char *tmp, const char *path);

/* Copy standard input to a new temporary file in $TMPDIR (or /tmp), for a
 * reader that needs to seek (HDF5 cannot read a pipe); its name goes to path
 * and is registered (kd_file_tmp_register): remove it with kd_file_tmp_remove
 * once the file is open.  -1 with kd_err. */
int kd_file_spool_stdin(char *path, size_t len);

/* Read a whole file ("-": stdin) into a malloc'ed buffer (NUL-terminated). */
int kd_file_slurp(const char *path, unsigned char **buf, size_t *len);

#endif
