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
/* A temporary name beside path: "dir/.name.tmp.PID". */
void kd_file_tmpname(char *buf, size_t len, const char *path);
/* fsync a finished file by name and rename it over path. */
int kd_file_rename_synced(const char *tmp, const char *path);

/* Read a whole file ("-": stdin) into a malloc'ed buffer (NUL-terminated). */
int kd_file_slurp(const char *path, unsigned char **buf, size_t *len);

#endif
