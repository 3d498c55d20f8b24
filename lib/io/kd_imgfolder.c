#include "kd_imgfolder.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kd_aug.h"
#include "kd_err.h"

typedef struct {
    char *path;
    int label;
} entry;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir matching want_dir (directories) or
 * else regular files ending in .png (case-insensitive). */
static int list(const char *dir, int want_dir, char ***out)
{
    DIR *d = opendir(dir);
    if (!d) {
        kd_err_set("%s: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st))
            continue;
        size_t l = strlen(e->d_name);
        int ok = want_dir ? S_ISDIR(st.st_mode)
                          : S_ISREG(st.st_mode) && l > 4 && !strcasecmp(e->d_name + l - 4, ".png");
        if (!ok)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv)
                break;
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Decode one PNG into u8 [h,w,c]; *px is malloc'ed. */
static int decode(const char *path, int c, uint8_t **px, int *h, int *w)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        kd_err_set("%s: unreadable PNG (%s)", path, im.message);
        return -1;
    }
    int wide = (im.format & PNG_FORMAT_FLAG_LINEAR) != 0; /* 16-bit source */
    im.format = (c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY) | (wide ? PNG_FORMAT_FLAG_LINEAR : 0);
    size_t n = (size_t)im.width * im.height * (size_t)c;
    void *buf = malloc(n * (wide ? 2 : 1));
    png_color black = {0, 0, 0};
    if (!buf || !png_image_finish_read(&im, &black, buf, 0, NULL)) {
        kd_err_set("%s: unreadable PNG (%s)", path, buf ? im.message : "out of memory");
        free(buf);
        png_image_free(&im);
        return -1;
    }
    if (wide) {
        uint16_t *s = buf;
        uint8_t *d = buf;
        for (size_t i = 0; i < n; i++)
            d[i] = (uint8_t)((s[i] * 255u + 32767u) / 65535u);
    }
    *px = buf;
    *h = (int)im.height;
    *w = (int)im.width;
    return 0;
}

/* Header only: size and whether it has colour. */
static int probe(const char *path, int *h, int *w, int *colour)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        kd_err_set("%s: unreadable PNG (%s)", path, im.message);
        return -1;
    }
    /* Refused before any pixel buffer is allocated from the header: sides
     * beyond the dataset format's, and more pixels than the file's data
     * could hold (deflate packs at most 1032:1; a row is at least w/8 + 1
     * bytes, 1-bit gray with its filter byte). */
    struct stat st;
    uint64_t least = (uint64_t)im.height * (im.width / 8 + 1);
    if (im.width > KD_DATASET_MAX_SIDE || im.height > KD_DATASET_MAX_SIDE || stat(path, &st) ||
        least > 1032 * (uint64_t)st.st_size) {
        if (im.width > KD_DATASET_MAX_SIDE || im.height > KD_DATASET_MAX_SIDE)
            kd_err_set("%s: a PNG of %ux%u pixels is larger than a dataset's images may be (%d a side)", path,
                       (unsigned)im.width, (unsigned)im.height, KD_DATASET_MAX_SIDE);
        else
            kd_err_set("%s: a PNG of %ux%u pixels cannot be held in a file of %lld bytes (corrupt header)", path,
                       (unsigned)im.width, (unsigned)im.height, (long long)st.st_size);
        png_image_free(&im);
        return -1;
    }
    *h = (int)im.height;
    *w = (int)im.width;
    *colour = (im.format & PNG_FORMAT_FLAG_COLORMAP) ? !(im.format & PNG_FORMAT_FLAG_COLOR) ? 0 : 1
                                                     : (im.format & PNG_FORMAT_FLAG_COLOR) != 0;
    png_image_free(&im);
    return 0;
}

static void resize_u8(const uint8_t *src, int H, int W, int C, uint8_t *dst, int oh, int ow, float *t1, float *t2)
{
    kd_aug_from_u8(src, H, W, C, t1, C);
    kd_box b = {0, 0, H, W};
    kd_aug_resized_crop(t1, C, H, W, b, t2, oh, ow);
    for (int ch = 0; ch < C; ch++)
        for (int i = 0; i < oh * ow; i++) {
            float v = roundf(t2[ch * oh * ow + i] * 255.0f);
            dst[i * C + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

int kd_imgfolder_read(const char *dir, int64_t limit, int rh, int rw, kd_dataset *d)
{
    char **classes;
    uint8_t *images = NULL; /* d's only on success: a failure frees them */
    int32_t *labels = NULL;
    int nc = list(dir, 1, &classes);
    if (nc < 0)
        return -1;
    if (nc == 0) {
        kd_err_set("%s: no class directories (expected %s/<class>/*.png)", dir, dir);
        free(classes);
        return -1;
    }
    entry *ents = NULL;
    int64_t n = 0, cap = 0;
    for (int k = 0; k < nc && (limit <= 0 || n < limit); k++) {
        char cd[4096];
        snprintf(cd, sizeof cd, "%s/%s", dir, classes[k]);
        char **files;
        int nf = list(cd, 0, &files);
        if (nf < 0)
            goto fail;
        for (int i = 0; i < nf && (limit <= 0 || n < limit); i++) {
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                entry *ne = realloc(ents, sizeof *ents * (size_t)cap);
                if (!ne) {
                    free_list(files, nf);
                    kd_err_set("out of memory");
                    goto fail;
                }
                ents = ne;
            }
            size_t l = strlen(cd) + strlen(files[i]) + 2;
            if (!(ents[n].path = malloc(l))) {
                free_list(files, nf);
                kd_err_set("out of memory");
                goto fail;
            }
            snprintf(ents[n].path, l, "%s/%s", cd, files[i]);
            ents[n++].label = k;
        }
        free_list(files, nf);
    }
    if (n == 0) {
        kd_err_set("%s: no PNG files in the class directories", dir);
        goto fail;
    }
    /* Pass 1: sizes and colour decide the output layout. */
    int H = 0, W = 0, colour = 0;
    for (int64_t i = 0; i < n; i++) {
        int h, w, c;
        if (probe(ents[i].path, &h, &w, &c))
            goto fail;
        colour |= c;
        if (i == 0) {
            H = h;
            W = w;
        } else if ((h != H || w != W) && !rh) {
            kd_err_set("%s: %dx%d differs from the first image's %dx%d (use --resize HxW)", ents[i].path, h,
                       w, H, W);
            goto fail;
        }
    }
    int C = colour ? 3 : 1, OH = rh ? rh : H, OW = rw ? rw : W;
    images = malloc((size_t)n * OH * OW * C);
    labels = malloc(sizeof(int32_t) * (size_t)n);
    if (!images || !labels) {
        kd_err_set("out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        uint8_t *px;
        int h, w;
        if (decode(ents[i].path, C, &px, &h, &w))
            goto fail;
        uint8_t *dst = images + (size_t)i * OH * OW * C;
        if (h == OH && w == OW)
            memcpy(dst, px, (size_t)OH * OW * C);
        else {
            float *t1 = malloc(sizeof(float) * (size_t)h * w * C), *t2 = malloc(sizeof(float) * (size_t)OH * OW * C);
            if (t1 && t2)
                resize_u8(px, h, w, C, dst, OH, OW, t1, t2);
            free(t1);
            free(t2);
            if (!t1 || !t2) {
                free(px);
                kd_err_set("out of memory");
                goto fail;
            }
        }
        free(px);
        labels[i] = ents[i].label;
        free(ents[i].path);
        ents[i].path = NULL;
    }
    free(ents);
    d->images = images;
    d->labels = labels;
    d->n = n;
    d->h = OH;
    d->w = OW;
    d->c = C;
    d->nclasses = nc;
    d->classes = classes; /* kept for the writer; freed at exit */
    d->source = dir;
    return 0;
fail:
    for (int64_t i = 0; i < n; i++)
        free(ents[i].path);
    free(ents);
    free(images);
    free(labels);
    free_list(classes, nc);
    return -1;
}
