#include "kd_cifar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kd_err.h"

static const char *cifar10_classes[] = {"airplane", "automobile", "bird", "cat", "deer",
                                        "dog", "frog", "horse", "ship", "truck"};

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* dir/name or dir/name.gz, whichever exists. */
static int find_file(char *out, size_t len, const char *dir, const char *name)
{
    struct stat st;
    snprintf(out, len, "%s/%s", dir, name);
    if (stat(out, &st) == 0)
        return 0;
    snprintf(out, len, "%s/%s.gz", dir, name);
    return stat(out, &st) == 0 ? 0 : -1;
}

static void free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* Class names from a CIFAR text file (batches.meta.txt, fine_label_names.txt):
 * the first n non-blank lines, trimmed.  NULL when the file is absent or has
 * fewer than n names (the built-in or numeric names are used then). */
static char **read_names(const char *dir, const char *file, int n, char *warn, size_t wl)
{
    char p[4200], line[256];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *fp = fopen(p, "r");
    if (!fp)
        return NULL;
    char **names = calloc((size_t)n, sizeof *names);
    int k = 0;
    while (names && k < n && fgets(line, sizeof line, fp)) {
        char *b = line, *e = line + strlen(line);
        while (*b == ' ' || *b == '\t')
            b++;
        while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        if (*b && !(names[k++] = strdup(b)))
            break;
    }
    fclose(fp);
    if (names && k == n && names[n - 1])
        return names;
    snprintf(warn, wl, "%s: %d class names, expected %d; using %s names", p, k, n, n == 10 ? "CIFAR-10" : "numeric");
    free_names(names, n);
    return NULL;
}

static char **builtin_cifar10(void)
{
    char **names = calloc(10, sizeof *names);
    for (int i = 0; names && i < 10; i++)
        if (!(names[i] = strdup(cifar10_classes[i]))) {
            free_names(names, 10);
            return NULL;
        }
    return names;
}

/* The batch files of split under src; *c100 for CIFAR-100 names. */
static int batch_files(const char *src, const char *split, char files[8][4096], int *c100)
{
    int nf = 0;
    *c100 = 0;
    if (!is_dir(src)) {
        snprintf(files[nf++], 4096, "%s", src);
        const char *b = strrchr(src, '/');
        b = b ? b + 1 : src;
        *c100 = !strncmp(b, "train.bin", 9) || !strncmp(b, "test.bin", 8);
        return nf;
    }
    char p[4096];
    if (!strcmp(split, "train")) {
        for (int i = 1; i <= 5; i++) {
            char name[32];
            snprintf(name, sizeof name, "data_batch_%d.bin", i);
            if (!find_file(p, sizeof p, src, name))
                snprintf(files[nf++], 4096, "%s", p);
        }
        if (!nf && !find_file(p, sizeof p, src, "train.bin")) {
            snprintf(files[nf++], 4096, "%s", p);
            *c100 = 1;
        }
    } else if (!find_file(p, sizeof p, src, "test_batch.bin")) {
        snprintf(files[nf++], 4096, "%s", p);
    } else if (!find_file(p, sizeof p, src, "test.bin")) {
        snprintf(files[nf++], 4096, "%s", p);
        *c100 = 1;
    }
    if (!nf)
        kd_err_set("%s: no CIFAR %s batches", src, split);
    return nf;
}

/* Appends the records of one file to d (capacity *cap). */
static int read_file(const char *path, int c100, int64_t limit, kd_dataset *d, int64_t *cap, int *maxl)
{
    const int rec = (c100 ? 2 : 1) + 3072;
    unsigned char r[2 + 3072];
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        kd_err_set("%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    long sz = fseek(fp, 0, SEEK_END) ? -1 : ftell(fp);
    if (sz < 0 || fseek(fp, 0, SEEK_SET)) {
        kd_err_set("%s: %s", path, strerror(errno));
        goto out;
    }
    if (sz <= 0 || sz % rec) {
        kd_err_set("%s: size %ld is not a whole number of %d-byte CIFAR records", path, sz, rec);
        goto out;
    }
    for (long k = 0; k < sz / rec && (limit <= 0 || d->n < limit); k++) {
        if (fread(r, 1, (size_t)rec, fp) != (size_t)rec) {
            kd_err_set("%s: short read", path);
            goto out;
        }
        if (d->n == *cap) {
            int64_t nc = *cap ? 2 * *cap : 10000;
            uint8_t *im = realloc(d->images, (size_t)nc * 3072);
            if (im)
                d->images = im;
            int32_t *lb = realloc(d->labels, (size_t)nc * sizeof(int32_t));
            if (lb)
                d->labels = lb;
            if (!im || !lb) {
                kd_err_set("%s: out of memory", path);
                goto out;
            }
            *cap = nc;
        }
        int lab = r[c100 ? 1 : 0];
        const unsigned char *px = r + (c100 ? 2 : 1);
        uint8_t *o = d->images + d->n * 3072;
        for (int i = 0; i < 1024; i++)
            for (int ch = 0; ch < 3; ch++)
                o[i * 3 + ch] = px[ch * 1024 + i];
        d->labels[d->n++] = lab;
        if (lab > *maxl)
            *maxl = lab;
    }
    rc = 0;
out:
    fclose(fp);
    return rc;
}

int kd_cifar_read(const char *src, const char *split, int64_t limit, kd_dataset *d, char *warn, size_t warn_len)
{
    char files[8][4096];
    int c100;
    memset(d, 0, sizeof *d);
    if (warn_len)
        warn[0] = 0;
    int nf = batch_files(src, split, files, &c100);
    if (!nf)
        return -1;
    d->h = d->w = 32;
    d->c = 3;
    d->source = src;
    int64_t cap = 0;
    int maxl = 0;
    for (int f = 0; f < nf && (limit <= 0 || d->n < limit); f++)
        if (read_file(files[f], c100, limit, d, &cap, &maxl))
            goto fail;
    if (!d->n) {
        kd_err_set("%s: no images", src);
        goto fail;
    }
    d->nclasses = c100 ? 100 : 10;
    if (maxl >= d->nclasses) {
        kd_err_set("%s: label %d out of range for CIFAR-%d", src, maxl, d->nclasses);
        goto fail;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", src);
    if (!is_dir(src)) {
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(dir, sizeof dir, ".");
    }
    d->classes = read_names(dir, c100 ? "fine_label_names.txt" : "batches.meta.txt", d->nclasses, warn, warn_len);
    if (!d->classes && !c100 && !(d->classes = builtin_cifar10())) {
        kd_err_set("%s: out of memory", src);
        goto fail;
    }
    return 0;
fail:
    kd_cifar_free(d);
    return -1;
}

void kd_cifar_free(kd_dataset *d)
{
    free(d->images);
    free(d->labels);
    free_names(d->classes, d->nclasses);
    d->images = NULL;
    d->labels = NULL;
    d->classes = NULL;
}
