/* kd_coco against pycocotools' numbers (every case in tests/fixtures/coco:
 * the 12 stats, and per-category AP / VOC AP50 where the case has them),
 * and small hand-made cases whose answers follow from the rules alone. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "kd_coco.h"
#include "kd_err.h"
#include "kd_test.h"

#define FX "tests/fixtures/coco"

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int cat_index(const kd_coco *c, const char *id)
{
    for (int k = 0; k < c->ncats; k++)
        if (c->cats[k] == strtoll(id, NULL, 10))
            return k;
    return -1;
}

static void check_case(const char *name)
{
    char p[512], q[512];
    snprintf(p, sizeof p, FX "/%s/gt.json", name);
    snprintf(q, sizeof q, FX "/%s/dets.json", name);
    kd_coco c = {0};
    kd_coco_result r;
    int ok = !kd_coco_load_gt_json(&c, p) && !kd_coco_load_dets_json(&c, q) && !kd_coco_prepare(&c) &&
             !kd_coco_evaluate(&c, &r);
    KD_CHECK(ok, "%s: loads and evaluates", name);
    if (!ok) {
        kd_coco_free(&c);
        return;
    }
    snprintf(p, sizeof p, FX "/%s/expected.json", name);
    json_t *e = json_load_file(p, 0, NULL);
    double worst = e ? 0 : INFINITY;
    for (int s = 0; e && s < KD_COCO_NSTATS; s++) {
        double d = fabs(r.stats[s] - num(e, kd_coco_stat_names[s]));
        worst = d <= worst ? worst : d; /* NaN counts as worst */
    }
    KD_CHECK(worst <= 1e-6, "%s: 12 stats within 1e-6 of pycocotools (worst %.3g)", name, worst);
    json_decref(e);

    snprintf(p, sizeof p, FX "/%s/per_class.json", name);
    if ((e = json_load_file(p, 0, NULL))) {
        const char *key;
        json_t *v;
        worst = 0;
        json_object_foreach(e, key, v)
        {
            int k = cat_index(&c, key);
            double d = k < 0 ? INFINITY : fabs(r.per_class[k] - json_number_value(v));
            worst = d <= worst ? worst : d;
        }
        KD_CHECK(worst <= 1e-6, "%s: per-category AP within 1e-6 (worst %.3g)", name, worst);
        json_decref(e);
    }
    snprintf(p, sizeof p, FX "/%s/voc.json", name);
    if ((e = json_load_file(p, 0, NULL))) {
        const char *key;
        json_t *v;
        worst = fmax(fabs(r.voc11 - num(e, "voc_ap50_11pt")), fabs(r.vocall - num(e, "voc_ap50_all")));
        if (!(worst == worst))
            worst = INFINITY;
        json_object_foreach(json_object_get(e, "per_class"), key, v)
        {
            int k = cat_index(&c, key);
            double d = k < 0 ? INFINITY : fabs(r.voc_class[k] - json_number_value(v));
            worst = d <= worst ? worst : d;
        }
        KD_CHECK(worst <= 1e-6, "%s: VOC AP50 within 1e-6 (worst %.3g)", name, worst);
        json_decref(e);
    }
    kd_coco_result_free(&r);
    kd_coco_free(&c);
}

static int near1(double v) { return fabs(v - 1) < 1e-12; }

/* A two-image, two-category world built in memory. */
static void world(kd_coco *c, int ngt, int ndt)
{
    memset(c, 0, sizeof *c);
    c->nimages = 2;
    c->images = malloc(2 * sizeof(int64_t));
    c->images[0] = 1, c->images[1] = 2;
    c->ncats = 2;
    c->cats = malloc(2 * sizeof(int64_t));
    c->cats[0] = 1, c->cats[1] = 2;
    c->catnames = calloc(2, sizeof(char *));
    c->gt = calloc((size_t)ngt, sizeof(kd_coco_box));
    c->dt = calloc((size_t)(ndt ? ndt : 1), sizeof(kd_coco_box));
    c->ngt = ngt;
    c->ndt = ndt;
}

static kd_coco_box box(int64_t img, int64_t cat, double x, double y, double w, double h, double s, int64_t id)
{
    kd_coco_box b = {x, y, w, h, w * h, s, img, cat, id, 0};
    return b;
}

static void check_small(void)
{
    kd_coco c;
    kd_coco_result r;
    /* one object, found exactly, plus a detection inside a crowd region:
     * its IoU with the crowd box is intersection / its own area = 1, so it
     * is matched and ignored, and AP stays 1 */
    world(&c, 2, 2);
    c.gt[0] = box(1, 1, 10, 10, 40, 40, 0, 1);
    c.gt[1] = box(2, 1, 0, 0, 200, 200, 0, 2);
    c.gt[1].crowd = 1;
    c.dt[0] = box(1, 1, 10, 10, 40, 40, 0.9, 1);
    c.dt[1] = box(2, 1, 20, 20, 30, 30, 0.95, 2);
    int ok = !kd_coco_prepare(&c) && !kd_coco_evaluate(&c, &r);
    /* precision is tp / (tp + fp + eps), as in pycocotools: 1 - 2e-16 */
    KD_CHECK(ok && near1(r.stats[0]) && near1(r.stats[8]) && near1(r.per_class[0]) && r.per_class[1] == -1,
             "crowd match ignored: AP %g AR100 %g, category without ground truth -1 (%g)", ok ? r.stats[0] : -9,
             ok ? r.stats[8] : -9, ok ? r.per_class[1] : -9);
    KD_CHECK(ok && r.stats[3] == -1 && r.stats[5] == -1, "no small or large ground truth: APs %g APl %g",
             ok ? r.stats[3] : -9, ok ? r.stats[5] : -9);
    if (ok)
        kd_coco_result_free(&r);
    kd_coco_free(&c);

    /* two equal-score detections on one object: the first in the file
     * takes it (stable sort), so full recall is reached at precision 1 and
     * the false positive after it costs nothing; with the order reversed
     * the shifted box would match only at the low thresholds */
    world(&c, 1, 2);
    c.gt[0] = box(1, 2, 0, 0, 50, 50, 0, 7);
    c.dt[0] = box(1, 2, 0, 0, 50, 50, 0.5, 1);
    c.dt[1] = box(1, 2, 10, 0, 50, 50, 0.5, 2); /* IoU 2/3 */
    ok = !kd_coco_prepare(&c) && !kd_coco_evaluate(&c, &r);
    KD_CHECK(ok && near1(r.stats[0]) && near1(r.voc11) && near1(r.vocall),
             "tie: the first detection matches, AP %g, VOC %g %g", ok ? r.stats[0] : -9, ok ? r.voc11 : -9,
             ok ? r.vocall : -9);
    if (ok)
        kd_coco_result_free(&r);
    kd_coco_box t = c.dt[0];
    c.dt[0] = c.dt[1], c.dt[1] = t;
    ok = !kd_coco_evaluate(&c, &r);
    /* thresholds .70-.95: the shifted box fails, the exact one matches
     * second at precision 1/2 (monotone envelope) */
    KD_CHECK(ok && fabs(r.stats[0] - (4 + 6 * 0.5) / 10.0) < 1e-12, "tie, file order reversed: AP %.17g",
             ok ? r.stats[0] : -9);
    if (ok)
        kd_coco_result_free(&r);
    kd_coco_free(&c);

    /* a detection on an image the ground truth does not have */
    world(&c, 1, 1);
    c.gt[0] = box(1, 1, 0, 0, 5, 5, 0, 1);
    c.dt[0] = box(3, 1, 0, 0, 5, 5, 0.5, 1);
    KD_CHECK(kd_coco_prepare(&c) != 0, "unknown image id refused");
    kd_coco_free(&c);
}

int main(void)
{
    DIR *d = opendir(FX);
    KD_CHECK(d != NULL, "open " FX);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "case", 4) == 0) {
            check_case(e->d_name);
            n++;
        }
    if (d)
        closedir(d);
    KD_CHECK(n >= 4, "%d fixture cases", n);
    check_small();
    return KD_TEST_DONE();
}
