/* linprobe — how linearly separable (and how clustered) are features? */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_dataset.h"
#include "kd_gemm.h"
#include "kd_h5.h"
#include "kd_knn.h"
#include "kd_linprobe.h"

static const char help[] =
    "Usage: linprobe [OPTION]... TRAIN.h5 TEST.h5\n"
    "Train a linear classifier (multinomial logistic regression, L-BFGS) on the\n"
    "TRAIN features and report its top-1/top-5 on TEST; optionally kNN.\n"
    "Inputs are features files (/features, /labels) or dataset files (/images\n"
    "flattened and scaled to [0,1], /labels).\n"
    "\n"
    "  --standardize      scale each feature to zero mean, unit variance (TRAIN's)\n"
    "  --wd W             L2 weight decay (default 1/N_train: scikit-learn's C=1)\n"
    "  --solver S         lbfgs (default; full batch, deterministic) or sgd\n"
    "  --max-iter N       L-BFGS iterations (default 300)\n"
    "  --tol T            stop when the largest gradient entry is below T (1e-6)\n"
    "  --epochs N         SGD epochs (default 30)\n"
    "  --batch N          SGD minibatch (default 256)\n"
    "  --lr LR            SGD initial learning rate, cosine decay to 0 (default 0.1)\n"
    "  --knn K            also weighted kNN with K neighbours\n"
    "  --knn-t T          kNN temperature (default 0.07)\n"
    "  --knn-metric M     cosine (weighted, SSL papers; default) or euclidean\n"
    "                     (unweighted majority, as scikit-learn's KNeighborsClassifier)\n"
    "  --no-linear        kNN only\n"
    "  --score            no training: top-1/top-5 of the /logits stored in TEST\n"
    "  --limit N          use the first N rows of each file\n"
    "  --save FILE.h5     keep the trained classifier (kind 'classifier')\n"
    "  --threads N        BLIS and OpenMP threads (default: all cores)\n"
    "  --seed S           SGD minibatch order (default 0)\n"
    "  --quiet, -h/--help, --version\n"
    "\n"
    "Prints one JSON line: top1, top5, knn_top1, n_train, n_test, dim, classes,\n"
    "iterations, loss, seconds.  See linprobe(1).\n";

enum { OPT_STD = KD_OPT_PROG, OPT_WD, OPT_ITER, OPT_TOL, OPT_KNN, OPT_KNNT, OPT_KNNM, OPT_NOLIN, OPT_SCORE,
       OPT_LIMIT, OPT_SAVE, OPT_SOLVER, OPT_EPOCHS, OPT_BATCH, OPT_LR };
static const struct option longopts[] = {
    {"standardize", no_argument, 0, OPT_STD},
    {"wd", required_argument, 0, OPT_WD},
    {"max-iter", required_argument, 0, OPT_ITER},
    {"tol", required_argument, 0, OPT_TOL},
    {"knn", required_argument, 0, OPT_KNN},
    {"knn-t", required_argument, 0, OPT_KNNT},
    {"knn-metric", required_argument, 0, OPT_KNNM},
    {"no-linear", no_argument, 0, OPT_NOLIN},
    {"score", no_argument, 0, OPT_SCORE},
    {"limit", required_argument, 0, OPT_LIMIT},
    {"save", required_argument, 0, OPT_SAVE},
    {"solver", required_argument, 0, OPT_SOLVER},
    {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"lr", required_argument, 0, OPT_LR},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

typedef struct {
    float *x;    /* [n,d] */
    int32_t *y;  /* [n] */
    float *logits;
    int64_t n;
    int d, k;    /* k: logits width */
    int nclass;  /* from the labels or the classes attribute */
} table;

/* A dataset file through kd_dataset: flattened pixels / 255 and labels. */
static void load_dataset(const char *path, int64_t limit, table *t, int *nclasses)
{
    kd_dataset_info di;
    kd_dataset_file *f = kd_dataset_open(path, &di);
    if (!f)
        kd_die_err();
    if (!di.has_labels)
        kd_die(KD_EXIT_FAIL, "%s: no /labels", path);
    int64_t n = limit > 0 && limit < di.n ? limit : di.n, d = (int64_t)di.h * di.w * di.c;
    if (d > (1 << 24))
        kd_die(KD_EXIT_FAIL, "%s: %lld features per row is too many", path, (long long)d);
    t->n = n;
    t->d = (int)d;
    t->x = malloc(sizeof(float) * (size_t)(n * d));
    t->y = malloc(sizeof(int32_t) * (size_t)n);
    uint8_t *px = malloc((size_t)(n * d));
    if (!t->x || !t->y || !px)
        kd_die(KD_EXIT_FAIL, "%s: out of memory for %lld x %lld features", path, (long long)n, (long long)d);
    if (kd_dataset_read_rows(f, 0, n, px, t->y))
        kd_die_err();
    for (int64_t i = 0; i < n * d; i++)
        t->x[i] = px[i] * (1.0f / 255.0f);
    free(px);
    *nclasses = di.nclasses;
    kd_dataset_close(f);
}

/* Reads features (or, from a dataset file, flattened pixels / 255) and
 * labels of one file; labels follow kd_dataset's rule. */
static void load(const char *path, int64_t limit, int want_logits, table *t)
{
    kd_h5 h;
    memset(t, 0, sizeof *t);
    if (kd_h5_open(&h, path, NULL))
        kd_die_err();
    const char *kind = kd_h5_kind(&h);
    int feats = !strcmp(kind, "features");
    if (!feats && strcmp(kind, "dataset"))
        kd_die(KD_EXIT_FAIL, "%s: is a kdpipe '%s' file, expected a 'features' or 'dataset' file", path, kind);
    int nc = 0;
    int64_t n = 0, ldims[KD_MAX_RANK];
    if (!feats) {
        kd_h5_close(&h);
        if (want_logits)
            kd_die(KD_EXIT_FAIL, "%s: a dataset file has no /logits", path);
        load_dataset(path, limit, t, &nc);
        n = t->n;
    } else {
        int64_t dims[KD_MAX_RANK];
        kd_dtype dt;
        int rank;
        if (kd_h5_info(&h, "features", &dt, &rank, dims))
            kd_die_err();
        if (rank != 2)
            kd_die(KD_EXIT_FAIL, "%s: /features has rank %d, expected 2", path, rank);
        n = dims[0];
        int64_t d = dims[1];
        if (limit > 0 && limit < n)
            n = limit;
        if (n < 1)
            kd_die(KD_EXIT_FAIL, "%s: /features is empty", path);
        if (d > (1 << 24))
            kd_die(KD_EXIT_FAIL, "%s: %lld features per row is too many", path, (long long)d);
        if (kd_h5_expect(&h, "labels", 1, (int64_t[]){-1}, ldims))
            kd_die_err();
        if (ldims[0] != dims[0])
            kd_die(KD_EXIT_FAIL, "%s: %lld labels for %lld rows", path, (long long)ldims[0], (long long)dims[0]);
        t->n = n;
        t->d = (int)d;
        t->x = malloc(sizeof(float) * (size_t)(n * d));
        t->y = malloc(sizeof(int32_t) * (size_t)n);
        if (!t->x || !t->y)
            kd_die(KD_EXIT_FAIL, "%s: out of memory for %lld x %lld features", path, (long long)n, (long long)d);
        if (kd_h5_read(&h, "features", KD_F32, 0, n, t->x) || kd_h5_read(&h, "labels", KD_I32, 0, n, t->y))
            kd_die_err();
        for (int64_t i = 0; i < n * d; i++)
            if (!isfinite(t->x[i]))
                kd_die(KD_EXIT_FAIL, "%s: row %lld has a non-finite feature", path, (long long)(i / d));
        if (kd_h5_attr_has(&h, NULL, "classes")) {
            char **cls;
            nc = kd_h5_attr_get_strv(&h, NULL, "classes", &cls);
            if (nc < 0)
                kd_die_err();
            kd_strv_free(cls, nc);
        }
        if (kd_dataset_check_labels(path, t->y, n, 0, nc))
            kd_die_err();
    }
    int32_t maxl = 0;
    for (int64_t i = 0; i < n; i++)
        maxl = t->y[i] > maxl ? t->y[i] : maxl;
    t->nclass = nc > 0 ? nc : maxl + 1;
    if (want_logits) {
        if (kd_h5_expect(&h, "logits", 2, (int64_t[]){-1, -1}, ldims))
            kd_die_err();
        if (ldims[0] < n)
            kd_die(KD_EXIT_FAIL, "%s: %lld logits rows for %lld labels", path, (long long)ldims[0], (long long)n);
        t->k = (int)ldims[1];
        t->logits = malloc(sizeof(float) * (size_t)(n * t->k));
        if (!t->logits || kd_h5_read(&h, "logits", KD_F32, 0, n, t->logits))
            kd_die(KD_EXIT_FAIL, "%s: cannot read /logits", path);
        /* a NaN logit "scores higher" than nothing: top-1 would be 1.0 */
        int64_t bad = kd_first_nonfinite(t->logits, (size_t)(n * t->k));
        if (bad >= 0)
            kd_die(KD_EXIT_FAIL, "%s: row %lld has a non-finite logit", path, (long long)(bad / t->k));
        if (maxl >= t->k)
            kd_die(KD_EXIT_FAIL, "%s: label %d but only %d logits", path, maxl, t->k);
    }
    if (feats)
        kd_h5_close(&h);
}

static void save(const char *path, const kd_logreg *m, const float *mean, const float *std)
{
    kd_h5 h;
    if (kd_h5_create(&h, path, "classifier") ||
        kd_h5_write(&h, "weight", KD_F32, 2, (int64_t[]){m->K, m->D}, m->W) ||
        kd_h5_write(&h, "bias", KD_F32, 1, (int64_t[]){m->K}, m->b) ||
        (mean && (kd_h5_write(&h, "mean", KD_F32, 1, (int64_t[]){m->D}, mean) ||
                  kd_h5_write(&h, "std", KD_F32, 1, (int64_t[]){m->D}, std)))) {
        kd_h5_abort(&h);
        kd_die_err();
    }
    if (kd_h5_commit(&h))
        kd_die_err();
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    int standardize = 0, max_iter = 300, knn = 0, metric = KD_KNN_COSINE, linear = 1, score = 0;
    double wd = -1, tol = 1e-6, knn_t = 0.07, lr = 0.1;
    int sgd = 0, epochs = 30, batch = 256;
    int64_t limit = 0;
    const char *save_path = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_STD: standardize = 1; break;
        case OPT_WD: wd = kd_parse_double("--wd", optarg, 0, 1e6); break;
        case OPT_ITER: max_iter = (int)kd_parse_long("--max-iter", optarg, 1, 1000000); break;
        case OPT_TOL: tol = kd_parse_double("--tol", optarg, 0, 1e6); break;
        case OPT_KNN: knn = (int)kd_parse_long("--knn", optarg, 1, 100000); break;
        case OPT_KNNT: knn_t = kd_parse_double("--knn-t", optarg, 1e-6, 1e6); break;
        case OPT_KNNM:
            if (!strcmp(optarg, "cosine"))
                metric = KD_KNN_COSINE;
            else if (!strcmp(optarg, "euclidean"))
                metric = KD_KNN_EUCLID;
            else
                kd_usage("--knn-metric: '%s' is not cosine or euclidean", optarg);
            break;
        case OPT_NOLIN: linear = 0; break;
        case OPT_SCORE: score = 1; break;
        case OPT_LIMIT: limit = kd_parse_long("--limit", optarg, 1, 1L << 40); break;
        case OPT_SAVE: save_path = optarg; break;
        case OPT_SOLVER:
            if (!strcmp(optarg, "lbfgs"))
                sgd = 0;
            else if (!strcmp(optarg, "sgd"))
                sgd = 1;
            else
                kd_usage("--solver: '%s' is not lbfgs or sgd", optarg);
            break;
        case OPT_EPOCHS: epochs = (int)kd_parse_long("--epochs", optarg, 1, 1000000); break;
        case OPT_BATCH: batch = (int)kd_parse_long("--batch", optarg, 1, 1 << 20); break;
        case OPT_LR: lr = kd_parse_double("--lr", optarg, 1e-12, 1e6); break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (argc - optind != 2)
        kd_usage("need TRAIN.h5 and TEST.h5");
    if (!linear && !knn && !score)
        kd_usage("--no-linear without --knn leaves nothing to do");
    if (save_path && (!linear || score))
        kd_usage("--save needs the linear classifier to be trained");
    kd_cli_output(save_path);
    if (kd_gemm_init(kd_cli_threads(&std)))
        kd_die_err();
    double t0 = kd_now();
    table tr, te;
    load(argv[optind], limit, 0, &tr);
    load(argv[optind + 1], limit, score, &te);
    if (tr.d != te.d)
        kd_die(KD_EXIT_FAIL, "%s has %d features per row but %s has %d", argv[optind], tr.d, argv[optind + 1], te.d);
    int K = tr.nclass > te.nclass ? tr.nclass : te.nclass;
    kd_json j;
    kd_json_begin(&j, stdout);
    if (score) {
        int64_t c1, c5;
        kd_topk_count(te.logits, te.y, te.n, te.k, &c1, &c5);
        kd_json_num(&j, "top1", (double)c1 / te.n);
        kd_json_num(&j, "top5", (double)c5 / te.n);
    } else if (linear) {
        float *mean = NULL, *sd = NULL, *xtr = tr.x, *xte = te.x;
        if (standardize) {
            mean = malloc(sizeof(float) * (size_t)tr.d);
            sd = malloc(sizeof(float) * (size_t)tr.d);
            if (!mean || !sd || kd_standardize_fit(tr.x, tr.n, tr.d, mean, sd))
                kd_die(KD_EXIT_FAIL, "out of memory");
            /* kNN below wants the raw features: standardise copies then */
            if (knn) {
                xtr = malloc(sizeof(float) * (size_t)(tr.n * tr.d));
                xte = malloc(sizeof(float) * (size_t)(te.n * te.d));
                if (!xtr || !xte)
                    kd_die(KD_EXIT_FAIL, "out of memory");
                memcpy(xtr, tr.x, sizeof(float) * (size_t)(tr.n * tr.d));
                memcpy(xte, te.x, sizeof(float) * (size_t)(te.n * te.d));
            }
            kd_standardize_apply(xtr, tr.n, tr.d, mean, sd);
            kd_standardize_apply(xte, te.n, te.d, mean, sd);
        }
        kd_logreg m;
        double w = wd >= 0 ? wd : 1.0 / (double)tr.n;
        if (kd_logreg_init(&m, tr.d, K))
            kd_die_err();
        m.threads = kd_cli_threads(&std);
        if ((sgd ? kd_logreg_fit_sgd(&m, xtr, tr.y, tr.n, w, epochs, batch, lr, std.seed)
                 : kd_logreg_fit(&m, xtr, tr.y, tr.n, w, max_iter, tol)))
            kd_die_err();
        float *S = malloc(sizeof(float) * (size_t)(te.n * K));
        if (!S)
            kd_die(KD_EXIT_FAIL, "out of memory");
        kd_logreg_scores(&m, xte, te.n, S);
        int64_t c1, c5;
        kd_topk_count(S, te.y, te.n, K, &c1, &c5);
        kd_json_num(&j, "top1", (double)c1 / te.n);
        kd_json_num(&j, "top5", (double)c5 / te.n);
        kd_json_str(&j, "solver", sgd ? "sgd" : "lbfgs");
        kd_json_int(&j, sgd ? "epochs" : "iterations", m.iters);
        kd_json_num(&j, "loss", m.loss);
        if (save_path)
            save(save_path, &m, mean, sd);
        free(S);
        if (xtr != tr.x)
            free(xtr), free(xte);
        free(mean), free(sd);
        kd_logreg_free(&m);
    }
    if (knn) {
        if (knn > tr.n)
            kd_die(KD_EXIT_FAIL, "--knn %d: the training set has only %lld rows", knn, (long long)tr.n);
        int32_t *pred = malloc(sizeof(int32_t) * (size_t)te.n);
        if (!pred || kd_knn_predict(tr.x, tr.y, tr.n, tr.d, K, te.x, te.n, knn, (float)knn_t, metric, pred))
            kd_die_err();
        int64_t c = 0;
        for (int64_t i = 0; i < te.n; i++)
            c += pred[i] == te.y[i];
        kd_json_num(&j, "knn_top1", (double)c / te.n);
        kd_json_int(&j, "knn_k", knn);
        kd_json_str(&j, "knn_metric", metric == KD_KNN_COSINE ? "cosine" : "euclidean");
        free(pred);
    }
    kd_json_int(&j, "n_train", tr.n);
    kd_json_int(&j, "n_test", te.n);
    kd_json_int(&j, "dim", tr.d);
    kd_json_int(&j, "classes", K);
    kd_json_num(&j, "seconds", kd_now() - t0);
    kd_json_end(&j);
    free(tr.x), free(tr.y), free(tr.logits), free(te.x), free(te.y), free(te.logits);
    return 0;
}
