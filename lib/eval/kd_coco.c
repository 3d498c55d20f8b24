#include "kd_coco.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"

const char *const kd_coco_stat_names[KD_COCO_NSTATS] = {"AP",  "AP50", "AP75", "APs",  "APm",  "APl",
                                                        "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

#define T 10
#define R 101
#define A 4
#define MAXDET 100
static const int maxdets[3] = {1, 10, 100};
static const double area_lo[A] = {0, 0, 32 * 32, 96 * 96}, area_hi[A] = {1e10, 32 * 32, 96 * 96, 1e10};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int find(const int64_t *v, int n, int64_t key)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (v[mid] == key)
            return mid;
        if (v[mid] < key)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int kd_coco_prepare(kd_coco *c)
{
    /* categories carry names: sort them together */
    for (int i = 1; i < c->ncats; i++)
        for (int j = i; j > 0 && c->cats[j - 1] > c->cats[j]; j--) {
            int64_t t = c->cats[j];
            c->cats[j] = c->cats[j - 1];
            c->cats[j - 1] = t;
            char *s = c->catnames[j];
            c->catnames[j] = c->catnames[j - 1];
            c->catnames[j - 1] = s;
        }
    if (c->nimages > 1)
        qsort(c->images, (size_t)c->nimages, sizeof(int64_t), cmp_i64);
    for (int i = 1; i < c->nimages; i++)
        if (c->images[i] == c->images[i - 1]) {
            kd_err_set("image id %lld appears twice", (long long)c->images[i]);
            return -1;
        }
    for (int i = 1; i < c->ncats; i++)
        if (c->cats[i] == c->cats[i - 1]) {
            kd_err_set("category id %lld appears twice", (long long)c->cats[i]);
            return -1;
        }
    for (int64_t i = 0; i < c->ngt; i++)
        if (find(c->images, c->nimages, c->gt[i].image) < 0 || find(c->cats, c->ncats, c->gt[i].cat) < 0) {
            kd_err_set("annotation %lld: unknown image %lld or category %lld", (long long)c->gt[i].id,
                       (long long)c->gt[i].image, (long long)c->gt[i].cat);
            return -1;
        }
    for (int64_t i = 0; i < c->ndt; i++) {
        if (find(c->images, c->nimages, c->dt[i].image) < 0) {
            kd_err_set("detection %lld: image id %lld is not in the ground truth", (long long)(i + 1),
                       (long long)c->dt[i].image);
            return -2;
        }
        if (find(c->cats, c->ncats, c->dt[i].cat) < 0) {
            kd_err_set("detection %lld: category id %lld is not in the ground truth", (long long)(i + 1),
                       (long long)c->dt[i].cat);
            return -2;
        }
    }
    return 0;
}

/* IoU as maskApi.c's bbIou: crowd ground truth divides by the detection's area. */
static double iou(const kd_coco_box *d, const kd_coco_box *g, int crowd)
{
    double w = fmin(d->x + d->w, g->x + g->w) - fmax(d->x, g->x);
    if (w <= 0)
        return 0;
    double h = fmin(d->y + d->h, g->y + g->h) - fmax(d->y, g->y);
    if (h <= 0)
        return 0;
    double i = w * h, da = d->w * d->h, u = crowd ? da : da + g->w * g->h - i;
    return i / u;
}

typedef struct {
    int nd;         /* detections kept (<= 100) */
    double *score;  /* [nd], descending */
    double *dtm;    /* [T][nd] matched gt id, 0 = none */
    uint8_t *dtig;  /* [T][nd] */
    int npig;       /* ground truths not ignored */
    int present;    /* any gt or dt: pycocotools' non-None */
} cell;

/* Stable ordering of indices by descending score. */
typedef struct {
    double s;
    int64_t i;
} si;

static int cmp_si(const void *a, const void *b)
{
    const si *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static double thr[T];

static void make_thresholds(void)
{
    /* as numpy.linspace(.5, .95, 10): i * ((.95 - .5) / 9) + .5, last exact */
    double step = (0.95 - 0.5) / 9;
    for (int t = 0; t < T; t++)
        thr[t] = t * step + 0.5;
    thr[T - 1] = 0.95;
}

/* One image and category, one area range (pycocotools' evaluateImg). */
static void evaluate_img(const kd_coco_box *const *g, int G, const kd_coco_box *const *d, int D, const double *ious,
                         int a, cell *out, int *gorder, uint8_t *gign, double *gtm)
{
    out->present = G > 0 || D > 0;
    out->nd = D;
    if (!out->present)
        return;
    /* gts: not ignored first, stable */
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < G; j++) {
            int ig = g[j]->crowd || g[j]->area < area_lo[a] || g[j]->area > area_hi[a];
            if (ig == pass)
                gorder[k++] = j;
        }
    out->npig = 0;
    for (int j = 0; j < G; j++) {
        const kd_coco_box *gg = g[gorder[j]];
        gign[j] = gg->crowd || gg->area < area_lo[a] || gg->area > area_hi[a];
        out->npig += !gign[j];
    }
    for (int t = 0; t < T; t++) {
        double *dtm = out->dtm + (size_t)t * D;
        uint8_t *dtig = out->dtig + (size_t)t * D;
        memset(gtm, 0, sizeof(double) * (size_t)G);
        for (int i = 0; i < D; i++) {
            dtm[i] = 0;
            dtig[i] = 0;
            if (G == 0)
                continue;
            double best = fmin(thr[t], 1 - 1e-10);
            int m = -1;
            for (int j = 0; j < G; j++) {
                int gj = gorder[j];
                if (gtm[j] > 0 && !g[gj]->crowd)
                    continue;
                if (m > -1 && gign[m] == 0 && gign[j] == 1)
                    break;
                double v = ious[(size_t)i * G + gj];
                if (v < best)
                    continue;
                best = v;
                m = j;
            }
            if (m == -1)
                continue;
            dtig[i] = gign[m];
            dtm[i] = (double)g[gorder[m]]->id;
            gtm[m] = (double)d[i]->id;
        }
        for (int i = 0; i < D; i++)
            if (dtm[i] == 0 && (d[i]->area < area_lo[a] || d[i]->area > area_hi[a]))
                dtig[i] = 1;
    }
}

/* VOC AP of one class at IoU 0.5: crowd ground truth is "difficult". */
static void voc_ap(const kd_coco *c, int k, int64_t **gcell, int *gcount, int64_t **dcell, int *dcount,
                   double *ap11, double *apall)
{
    int I = c->nimages;
    int64_t npos = 0, nd = 0;
    for (int i = 0; i < I; i++) {
        for (int j = 0; j < gcount[(size_t)k * I + i]; j++)
            npos += !c->gt[gcell[(size_t)k * I + i][j]].crowd;
        nd += dcount[(size_t)k * I + i];
    }
    *ap11 = *apall = -1;
    if (npos == 0)
        return;
    si *order = malloc(sizeof(si) * (size_t)(nd ? nd : 1));
    int *img = malloc(sizeof(int) * (size_t)(nd ? nd : 1));
    double *tp = calloc((size_t)(nd ? nd : 1), sizeof(double)), *fp = calloc((size_t)(nd ? nd : 1), sizeof(double));
    uint8_t **used = calloc((size_t)I, sizeof(uint8_t *));
    int64_t n = 0;
    for (int i = 0; i < I; i++)
        for (int j = 0; j < dcount[(size_t)k * I + i]; j++) {
            int64_t di = dcell[(size_t)k * I + i][j];
            order[n].s = c->dt[di].score;
            order[n].i = di;
            img[n++] = i;
        }
    /* sort detections by score, keeping image alongside */
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)(nd ? nd : 1));
    for (int64_t q = 0; q < nd; q++)
        pos[q] = q;
    si *tmp = malloc(sizeof(si) * (size_t)(nd ? nd : 1));
    for (int64_t q = 0; q < nd; q++) {
        tmp[q].s = order[q].s;
        tmp[q].i = q;
    }
    qsort(tmp, (size_t)nd, sizeof(si), cmp_si);
    for (int64_t q = 0; q < nd; q++) {
        int64_t src = tmp[q].i;
        int i = img[src];
        const kd_coco_box *d = &c->dt[order[src].i];
        int G = gcount[(size_t)k * I + i];
        if (!used[i])
            used[i] = calloc((size_t)(G ? G : 1), 1);
        double best = -1;
        int bj = -1;
        for (int j = 0; j < G; j++) {
            double v = iou(d, &c->gt[gcell[(size_t)k * I + i][j]], 0);
            if (v > best) {
                best = v;
                bj = j;
            }
        }
        if (best >= 0.5) {
            if (c->gt[gcell[(size_t)k * I + i][bj]].crowd)
                continue; /* difficult: neither TP nor FP */
            if (!used[i][bj]) {
                tp[q] = 1;
                used[i][bj] = 1;
            } else
                fp[q] = 1;
        } else
            fp[q] = 1;
    }
    /* precision/recall over the kept detections */
    double ctp = 0, cfp = 0, *rec = malloc(sizeof(double) * (size_t)(nd + 2)), *prec = malloc(sizeof(double) * (size_t)(nd + 2));
    int64_t m = 0;
    for (int64_t q = 0; q < nd; q++) {
        if (!tp[q] && !fp[q])
            continue;
        ctp += tp[q];
        cfp += fp[q];
        rec[m + 1] = ctp / (double)npos;
        prec[m + 1] = ctp / (ctp + cfp);
        m++;
    }
    double s11 = 0;
    for (int t = 0; t <= 10; t++) {
        double p = 0;
        for (int64_t q = 1; q <= m; q++)
            if (rec[q] >= t / 10.0 && prec[q] > p)
                p = prec[q];
        s11 += p;
    }
    s11 /= 11.0;
    rec[0] = 0;
    prec[0] = 0;
    rec[m + 1] = 1;
    prec[m + 1] = 0;
    for (int64_t q = m; q >= 0; q--)
        prec[q] = fmax(prec[q], prec[q + 1]);
    double sall = 0;
    for (int64_t q = 1; q <= m + 1; q++)
        sall += (rec[q] - rec[q - 1]) * prec[q];
    *ap11 = s11;
    *apall = sall;
    for (int i = 0; i < I; i++)
        free(used[i]);
    free(used), free(order), free(img), free(tp), free(fp), free(pos), free(tmp), free(rec), free(prec);
}

int kd_coco_evaluate(const kd_coco *c, kd_coco_result *r)
{
    make_thresholds();
    int I = c->nimages, K = c->ncats;
    memset(r, 0, sizeof *r);
    size_t nc = (size_t)K * I;
    /* group boxes by (category, image), in file order */
    int *gcount = calloc(nc, sizeof(int)), *dcount = calloc(nc, sizeof(int));
    int64_t **gcell = calloc(nc, sizeof(int64_t *)), **dcell = calloc(nc, sizeof(int64_t *));
    cell *cells = calloc(nc * A, sizeof(cell));
    r->per_class = malloc(sizeof(double) * (size_t)(K ? K : 1));
    r->voc_class = malloc(sizeof(double) * (size_t)(K ? K : 1));
    if (!gcount || !dcount || !gcell || !dcell || !cells || !r->per_class || !r->voc_class) {
        kd_err_set("out of memory");
        return -1;
    }
    int64_t *gk = malloc(sizeof(int64_t) * (size_t)(c->ngt + 1)), *dk = malloc(sizeof(int64_t) * (size_t)(c->ndt + 1));
    for (int64_t i = 0; i < c->ngt; i++) {
        gk[i] = (int64_t)find(c->cats, K, c->gt[i].cat) * I + find(c->images, I, c->gt[i].image);
        gcount[gk[i]]++;
    }
    for (int64_t i = 0; i < c->ndt; i++) {
        dk[i] = (int64_t)find(c->cats, K, c->dt[i].cat) * I + find(c->images, I, c->dt[i].image);
        dcount[dk[i]]++;
    }
    for (size_t q = 0; q < nc; q++) {
        gcell[q] = malloc(sizeof(int64_t) * (size_t)(gcount[q] + 1));
        dcell[q] = malloc(sizeof(int64_t) * (size_t)(dcount[q] + 1));
        gcount[q] = dcount[q] = 0;
    }
    for (int64_t i = 0; i < c->ngt; i++)
        gcell[gk[i]][gcount[gk[i]]++] = i;
    for (int64_t i = 0; i < c->ndt; i++)
        dcell[dk[i]][dcount[dk[i]]++] = i;
    free(gk);
    free(dk);

    /* evaluateImg for every (category, area, image) */
    int maxg = 1;
    for (size_t q = 0; q < nc; q++)
        maxg = gcount[q] > maxg ? gcount[q] : maxg;
    const kd_coco_box **g = malloc(sizeof(*g) * (size_t)maxg), *d[MAXDET];
    double *ious = malloc(sizeof(double) * (size_t)maxg * MAXDET), *gtm = malloc(sizeof(double) * (size_t)maxg);
    int *gorder = malloc(sizeof(int) * (size_t)maxg);
    uint8_t *gign = malloc((size_t)maxg);
    si *sorted = NULL;
    size_t sorted_cap = 0;
    /* one pool for the per-cell arrays: most (category, image) cells are
     * empty, and a malloc per cell and area range dominated the run time */
    size_t kept = 0;
    for (size_t q = 0; q < nc; q++)
        kept += (size_t)(dcount[q] < MAXDET ? dcount[q] : MAXDET);
    double *pool_score = malloc(sizeof(double) * (A * kept + 1));
    double *pool_dtm = malloc(sizeof(double) * (A * T * kept + 1));
    uint8_t *pool_dtig = malloc(A * T * kept + 1);
    if (!g || !ious || !gtm || !gorder || !gign || !pool_score || !pool_dtm || !pool_dtig) {
        kd_err_set("out of memory");
        return -1;
    }
    size_t used = 0;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < I; i++) {
            size_t q = (size_t)k * I + i;
            int G = gcount[q], D = dcount[q];
            if (G == 0 && D == 0)
                continue; /* pycocotools' None: calloc left present = 0 */
            for (int j = 0; j < G; j++)
                g[j] = &c->gt[gcell[q][j]];
            if ((size_t)D > sorted_cap) {
                sorted_cap = (size_t)D * 2;
                sorted = realloc(sorted, sizeof(si) * sorted_cap);
            }
            for (int j = 0; j < D; j++) {
                sorted[j].s = c->dt[dcell[q][j]].score;
                sorted[j].i = j;
            }
            if (D > 1)
                qsort(sorted, (size_t)D, sizeof(si), cmp_si);
            if (D > MAXDET)
                D = MAXDET;
            for (int j = 0; j < D; j++)
                d[j] = &c->dt[dcell[q][sorted[j].i]];
            for (int j = 0; j < D; j++)
                for (int h = 0; h < G; h++)
                    ious[(size_t)j * G + h] = iou(d[j], g[h], g[h]->crowd);
            for (int a = 0; a < A; a++) {
                cell *ce = &cells[q * A + a];
                ce->score = pool_score + used * A + (size_t)a * D;
                ce->dtm = pool_dtm + (used * A + (size_t)a * D) * T;
                ce->dtig = pool_dtig + (used * A + (size_t)a * D) * T;
                for (int j = 0; j < D; j++)
                    ce->score[j] = d[j]->score;
                evaluate_img(g, G, d, D, ious, a, ce, gorder, gign, gtm);
            }
            used += (size_t)D;
        }
    free(sorted);

    /* accumulate + summarize */
    double *precision = malloc(sizeof(double) * (size_t)T * R * K * A * 3);
    double *recall = malloc(sizeof(double) * (size_t)T * K * A * 3);
    for (size_t q = 0; q < (size_t)T * R * K * A * 3; q++)
        precision[q] = -1;
    for (size_t q = 0; q < (size_t)T * K * A * 3; q++)
        recall[q] = -1;
#define PIDX(t, r_, k, a, m) (((((size_t)(t) * R + (r_)) * K + (k)) * A + (a)) * 3 + (m))
#define RIDX(t, k, a, m) ((((size_t)(t) * K + (k)) * A + (a)) * 3 + (m))
    int64_t cap = 16;
    si *all = malloc(sizeof(si) * (size_t)cap);
    double *sc = malloc(sizeof(double) * (size_t)cap), *tps = NULL, *fps = NULL, *pr = NULL;
    uint32_t *src = malloc(sizeof(uint32_t) * (size_t)cap), *scode = NULL;
    double rthr[R];
    for (int q = 0; q < R; q++)
        rthr[q] = q * (1.0 / 100);
    rthr[R - 1] = 1.0;
    for (int k = 0; k < K; k++)
        for (int a = 0; a < A; a++)
            for (int m = 0; m < 3; m++) {
                int64_t n = 0, npig = 0, anyE = 0;
                for (int i = 0; i < I; i++) {
                    cell *ce = &cells[((size_t)k * I + i) * A + a];
                    if (!ce->present)
                        continue;
                    anyE = 1;
                    npig += ce->npig;
                    int nd = ce->nd < maxdets[m] ? ce->nd : maxdets[m];
                    if (n + nd > cap) {
                        while (n + nd > cap)
                            cap *= 2;
                        all = realloc(all, sizeof(si) * (size_t)cap);
                        sc = realloc(sc, sizeof(double) * (size_t)cap);
                        src = realloc(src, sizeof(uint32_t) * (size_t)cap);
                    }
                    /* the per-threshold outcome packed while the cell is
                     * in cache: bit t = true positive, bit 16+t = false
                     * positive (neither = ignored) */
                    for (int j = 0; j < nd; j++) {
                        uint32_t code = 0;
                        for (int t = 0; t < T; t++) {
                            double dm = ce->dtm[(size_t)t * ce->nd + j];
                            if (!ce->dtig[(size_t)t * ce->nd + j])
                                code |= dm != 0 ? 1u << t : 1u << (16 + t);
                        }
                        all[n].s = ce->score[j];
                        all[n].i = n;
                        src[n] = code;
                        n++;
                    }
                }
                if (!anyE || npig == 0)
                    continue;
                qsort(all, (size_t)n, sizeof(si), cmp_si);
                tps = realloc(tps, sizeof(double) * (size_t)(n + 1));
                fps = realloc(fps, sizeof(double) * (size_t)(n + 1));
                pr = realloc(pr, sizeof(double) * (size_t)(n + 1));
                scode = realloc(scode, sizeof(uint32_t) * (size_t)(n + 1));
                for (int64_t q = 0; q < n; q++)
                    scode[q] = src[all[q].i];
                for (int t = 0; t < T; t++) {
                    double ctp = 0, cfp = 0;
                    for (int64_t q = 0; q < n; q++) {
                        ctp += (scode[q] >> t) & 1;
                        cfp += (scode[q] >> (16 + t)) & 1;
                        tps[q] = ctp;
                        fps[q] = cfp;
                    }
                    recall[RIDX(t, k, a, m)] = n ? tps[n - 1] / (double)npig : 0;
                    for (int64_t q = 0; q < n; q++)
                        pr[q] = tps[q] / (fps[q] + tps[q] + 2.220446049250313e-16);
                    for (int64_t q = n - 1; q > 0; q--)
                        if (pr[q] > pr[q - 1])
                            pr[q - 1] = pr[q];
                    /* searchsorted(rc, recThrs, 'left'): first q with rc[q] >= thr */
                    int64_t q = 0;
                    for (int ri = 0; ri < R; ri++) {
                        while (q < n && tps[q] / (double)npig < rthr[ri])
                            q++;
                        precision[PIDX(t, ri, k, a, m)] = q < n ? pr[q] : 0;
                    }
                }
            }
    free(all), free(sc), free(src), free(scode), free(tps), free(fps), free(pr);

    /* summarize */
    static const struct { int ap, t, a, m; } what[KD_COCO_NSTATS] = {
        {1, -1, 0, 2}, {1, 0, 0, 2}, {1, 5, 0, 2}, {1, -1, 1, 2}, {1, -1, 2, 2}, {1, -1, 3, 2},
        {0, -1, 0, 0}, {0, -1, 0, 1}, {0, -1, 0, 2}, {0, -1, 1, 2}, {0, -1, 2, 2}, {0, -1, 3, 2}};
    for (int s = 0; s < KD_COCO_NSTATS; s++) {
        double sum = 0;
        int64_t cnt = 0;
        for (int t = 0; t < T; t++) {
            if (what[s].t >= 0 && t != what[s].t)
                continue;
            for (int k = 0; k < K; k++) {
                if (what[s].ap)
                    for (int ri = 0; ri < R; ri++) {
                        double v = precision[PIDX(t, ri, k, what[s].a, what[s].m)];
                        if (v > -1)
                            sum += v, cnt++;
                    }
                else {
                    double v = recall[RIDX(t, k, what[s].a, what[s].m)];
                    if (v > -1)
                        sum += v, cnt++;
                }
            }
        }
        r->stats[s] = cnt ? sum / (double)cnt : -1;
    }
    for (int k = 0; k < K; k++) {
        double sum = 0;
        int64_t cnt = 0;
        for (int t = 0; t < T; t++)
            for (int ri = 0; ri < R; ri++) {
                double v = precision[PIDX(t, ri, k, 0, 2)];
                if (v > -1)
                    sum += v, cnt++;
            }
        r->per_class[k] = cnt ? sum / (double)cnt : -1;
    }
    free(precision);
    free(recall);

    double s11 = 0, sall = 0;
    int nv = 0;
    for (int k = 0; k < K; k++) {
        double a11, aall;
        voc_ap(c, k, gcell, gcount, dcell, dcount, &a11, &aall);
        r->voc_class[k] = aall;
        if (aall >= 0) {
            s11 += a11;
            sall += aall;
            nv++;
        }
    }
    r->voc11 = nv ? s11 / nv : -1;
    r->vocall = nv ? sall / nv : -1;

    for (size_t q = 0; q < nc; q++) {
        free(gcell[q]);
        free(dcell[q]);
    }
    free(pool_score), free(pool_dtm), free(pool_dtig);
    free(gcell), free(dcell), free(gcount), free(dcount), free(cells);
    free(g), free(ious), free(gtm), free(gorder), free(gign);
    return 0;
}

void kd_coco_result_free(kd_coco_result *r)
{
    free(r->per_class);
    free(r->voc_class);
    r->per_class = r->voc_class = NULL;
}

void kd_coco_free(kd_coco *c)
{
    for (int i = 0; i < c->ncats; i++)
        free(c->catnames[i]);
    free(c->catnames);
    free(c->cats);
    free(c->images);
    free(c->gt);
    free(c->dt);
    memset(c, 0, sizeof *c);
}
