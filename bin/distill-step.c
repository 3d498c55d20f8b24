/* distill-step — train a model from a stream, one optimisation step per frame. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_evalset.h"
#include "kd_gemm.h"
#include "kd_h5.h"
#include "kd_knn.h"
#include "kd_loss.h"
#include "kd_model.h"
#include "kd_model_io.h"
#include "kd_optim.h"
#include "kd_stream.h"

static const char help[] =
    "Usage: augment ... | distill-step --method NAME -m INIT.h5 -o OUT.h5 [OPTION]...\n"
    "Train a model on a kdpipe stream: one SGD step per frame.\n"
    "\n"
    "Losses:\n"
    "  --method NAME       ce (supervised cross-entropy on view0 and label) or moco\n"
    "                      (MoCo v2: InfoNCE of view0 queries against momentum-encoder\n"
    "                      keys of view1 and a queue)\n"
    "  --loss NAME:W[,..]  losses with weights (instead of --method), e.g. ce:1\n"
    "  --queue K           MoCo queue length (default 4096)\n"
    "  --tau T             MoCo temperature (default 0.2)\n"
    "  --moco-m M          key encoder momentum (default 0.999)\n"
    "  --shuffle-bn-group G  key BN statistics per group of G shuffled images (32)\n"
    "Optimiser and schedule:\n"
    "  --lr LR             base learning rate (default 0.03)\n"
    "  --lr-scale-batch    multiply --lr by batch/256\n"
    "  --momentum M        SGD momentum (0.9);  --nesterov\n"
    "  --wd W              weight decay (1e-4);  --wd-exclude-bn-bias\n"
    "  --lars ETA          LARS: scale each weight tensor's step by its trust ratio\n"
    "                      ETA*|w|/|g+wd*w| (BN and biases unscaled), e.g. 0.001\n"
    "  --schedule S        const, cosine (default) or step:E1,E2,... (x0.1 at epochs)\n"
    "  --warmup-steps N    linear warmup\n"
    "  --epochs E          epochs the stream holds (for the schedule; steps per epoch\n"
    "                      from the frames' 'batches' metadata)\n"
    "  --total-steps N     the schedule's length in steps (instead of --epochs)\n"
    "Evaluation, checkpoints, log:\n"
    "  --val DATASET.h5    evaluate before the first step, every --val-every steps\n"
    "                      and after the last: top-1 of the logits (ce), or\n"
    "                      weighted kNN top-1 (moco) against features of\n"
    "                      --knn-bank DATASET.h5\n"
    "  --val-every N       (default: at the end only)\n"
    "  --val-limit N       first N validation images;  --knn-bank-limit N (10000)\n"
    "  --ckpt FILE         checkpoint path (default OUT.ckpt.h5);  --ckpt-every N steps\n"
    "  --resume CKPT       continue from a checkpoint: frames before its step are skipped\n"
    "  --log FILE          JSON-lines log there instead of stdout;  --log-every N (1)\n"
    "Common: -m MODEL.h5, -o OUT.h5, --seed S, --threads N, --quiet, -h, --version\n"
    "See distill-step(1).\n";

enum { OPT_METHOD = KD_OPT_PROG, OPT_LOSS, OPT_QUEUE, OPT_TAU, OPT_MOCOM, OPT_SBN, OPT_LR, OPT_LRSCALE, OPT_MOM,
       OPT_NEST, OPT_WD, OPT_WDX, OPT_SCHED, OPT_WARM, OPT_EPOCHS, OPT_TOTAL, OPT_VAL, OPT_VALEVERY, OPT_VALLIM,
       OPT_BANK, OPT_BANKLIM, OPT_CKPT, OPT_CKPTEVERY, OPT_RESUME, OPT_LOG, OPT_LOGEVERY, OPT_LARS };
static const struct option longopts[] = {
    {"method", required_argument, 0, OPT_METHOD}, {"loss", required_argument, 0, OPT_LOSS},
    {"queue", required_argument, 0, OPT_QUEUE}, {"tau", required_argument, 0, OPT_TAU},
    {"moco-m", required_argument, 0, OPT_MOCOM}, {"shuffle-bn-group", required_argument, 0, OPT_SBN},
    {"lr", required_argument, 0, OPT_LR}, {"lr-scale-batch", no_argument, 0, OPT_LRSCALE},
    {"momentum", required_argument, 0, OPT_MOM}, {"nesterov", no_argument, 0, OPT_NEST},
    {"wd", required_argument, 0, OPT_WD}, {"wd-exclude-bn-bias", no_argument, 0, OPT_WDX},
    {"lars", required_argument, 0, OPT_LARS},
    {"schedule", required_argument, 0, OPT_SCHED}, {"warmup-steps", required_argument, 0, OPT_WARM},
    {"epochs", required_argument, 0, OPT_EPOCHS}, {"total-steps", required_argument, 0, OPT_TOTAL},
    {"val", required_argument, 0, OPT_VAL}, {"val-every", required_argument, 0, OPT_VALEVERY},
    {"val-limit", required_argument, 0, OPT_VALLIM}, {"knn-bank", required_argument, 0, OPT_BANK},
    {"knn-bank-limit", required_argument, 0, OPT_BANKLIM}, {"ckpt", required_argument, 0, OPT_CKPT},
    {"ckpt-every", required_argument, 0, OPT_CKPTEVERY}, {"resume", required_argument, 0, OPT_RESUME},
    {"log", required_argument, 0, OPT_LOG}, {"log-every", required_argument, 0, OPT_LOGEVERY},
    {"model", required_argument, 0, 'm'}, {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS, {0, 0, 0, 0}};

#define MAXL 8
typedef struct {
    const kd_loss_module *mod[MAXL];
    float w[MAXL];
    void *st[MAXL];
    int n;
} losses;

static void parse_losses(losses *L, const char *spec)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *colon = strchr(tok, ':');
        float w = 1;
        if (colon) {
            *colon = 0;
            w = (float)kd_parse_double("--loss", colon + 1, 0, 1e6);
        }
        const kd_loss_module *m = kd_loss_find(tok);
        if (!m) {
            char known[256] = "";
            for (int i = 0; kd_loss_modules[i]; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), " %s", kd_loss_modules[i]->name);
            kd_usage("--loss: unknown loss '%s' (known:%s)", tok, known);
        }
        if (L->n == MAXL)
            kd_usage("--loss: at most %d losses", MAXL);
        L->mod[L->n] = m;
        L->w[L->n++] = w;
    }
}

typedef struct {
    kd_model *m;
    kd_sgd opt;
    losses *L;
    long step;   /* steps done */
    long epoch;
} trainer;

/* Model + training state, atomically. */
static int save_all(const trainer *t, const char *path)
{
    kd_h5 h;
    if (kd_h5_create(&h, path, "model"))
        return -1;
    if (kd_model_save_h5(t->m, &h) ||
        kd_h5_write(&h, "train/momentum", KD_F32, 1, (int64_t[]){(int64_t)t->opt.n}, t->opt.buf) ||
        kd_h5_attr_set_i64(&h, "train", "step", t->step) || kd_h5_attr_set_i64(&h, "train", "epoch", t->epoch)) {
        kd_h5_abort(&h);
        return -1;
    }
    for (int i = 0; i < t->L->n; i++) {
        char g[128];
        snprintf(g, sizeof g, "train/%s", t->L->mod[i]->name);
        if (t->L->mod[i]->save && t->L->mod[i]->save(t->L->st[i], &h, g)) {
            kd_h5_abort(&h);
            return -1;
        }
    }
    return kd_h5_commit(&h);
}

/* Eval-mode features (or logits) of a set, in chunks of the prepared batch. */
static int eval_outputs(kd_model *m, const kd_evalset *e, int B, int logits, float *out, int dim)
{
    size_t per = (size_t)e->c * e->h * e->w;
    for (int64_t i = 0; i < e->n; i += B) {
        int nb = (int)(e->n - i < B ? e->n - i : B);
        if (kd_model_forward(m, e->x + (size_t)i * per, nb, 0, 0))
            return -1;
        memcpy(out + (size_t)i * dim, logits ? kd_model_logits(m) : kd_model_features(m), sizeof(float) * (size_t)nb * dim);
    }
    return 0;
}

/* Validation: weighted kNN top-1 of the pooled features against a bank
 * (self-supervised, or no classifier), else top-1 of the logits. */
typedef struct {
    kd_evalset vs, bs;
    float *vout, *bout;
    int32_t *pred;
    int knn, B, D, K;
} validator;

static int validate(validator *v, const trainer *t, FILE *logf)
{
    int64_t c = 0;
    if (v->knn) {
        if (eval_outputs(t->m, &v->bs, v->B, 0, v->bout, v->D) || eval_outputs(t->m, &v->vs, v->B, 0, v->vout, v->D))
            return -1;
        int nclass = 0;
        for (int64_t i = 0; i < v->bs.n; i++)
            nclass = v->bs.y[i] + 1 > nclass ? v->bs.y[i] + 1 : nclass;
        for (int64_t i = 0; i < v->vs.n; i++)
            nclass = v->vs.y[i] + 1 > nclass ? v->vs.y[i] + 1 : nclass;
        int k = v->bs.n < 20 ? (int)v->bs.n : 20;
        if (kd_knn_predict(v->bout, v->bs.y, v->bs.n, v->D, nclass, v->vout, v->vs.n, k, 0.07f, KD_KNN_COSINE,
                           v->pred))
            return -1;
        for (int64_t i = 0; i < v->vs.n; i++)
            c += v->pred[i] == v->vs.y[i];
    } else {
        if (eval_outputs(t->m, &v->vs, v->B, 1, v->vout, v->K))
            return -1;
        for (int64_t i = 0; i < v->vs.n; i++) {
            const float *z = v->vout + (size_t)i * v->K;
            int a = 0;
            for (int k = 1; k < v->K; k++)
                a = z[k] > z[a] ? k : a;
            c += a == v->vs.y[i];
        }
    }
    kd_json j;
    kd_json_begin(&j, logf);
    kd_json_int(&j, "step", t->step);
    kd_json_int(&j, "epoch", t->epoch);
    kd_json_num(&j, v->knn ? "val_knn_top1" : "val_top1", (double)c / v->vs.n);
    kd_json_end(&j);
    return 0;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(argv[0], help, &std);
    const char *model_path = NULL, *out = NULL, *val = NULL, *bank = NULL, *ckpt = NULL, *resume = NULL,
               *log_path = NULL, *sched_spec = "cosine";
    losses L = {0};
    kd_loss_opts lo = {4096, 0.2f, 0.999f, 32, 0, 0, 0, 0};
    kd_sgd_opts so = {0.9f, 1e-4f, 0, 0, 0};
    double lr = 0.03, epochs = 0;
    long warmup = 0, total = 0, val_every = 0, ckpt_every = 0, log_every = 1;
    int64_t val_limit = 0, bank_limit = 10000;
    int lr_scale = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_METHOD:
            if (strcmp(optarg, "ce") && strcmp(optarg, "moco"))
                kd_usage("--method: '%s' is not ce or moco (other losses: --loss)", optarg);
            parse_losses(&L, optarg);
            break;
        case OPT_LOSS: parse_losses(&L, optarg); break;
        case OPT_QUEUE: lo.queue = (int)kd_parse_long("--queue", optarg, 1, 1 << 24); break;
        case OPT_TAU: lo.tau = (float)kd_parse_double("--tau", optarg, 1e-4, 100); break;
        case OPT_MOCOM: lo.moco_m = (float)kd_parse_double("--moco-m", optarg, 0, 1); break;
        case OPT_SBN: lo.bn_group = (int)kd_parse_long("--shuffle-bn-group", optarg, 0, 1 << 20); break;
        case OPT_LR: lr = kd_parse_double("--lr", optarg, 0, 1e3); break;
        case OPT_LRSCALE: lr_scale = 1; break;
        case OPT_MOM: so.momentum = (float)kd_parse_double("--momentum", optarg, 0, 1); break;
        case OPT_NEST: so.nesterov = 1; break;
        case OPT_WD: so.wd = (float)kd_parse_double("--wd", optarg, 0, 1); break;
        case OPT_WDX: so.wd_exclude = 1; break;
        case OPT_LARS: so.lars_eta = (float)kd_parse_double("--lars", optarg, 1e-9, 1e3); break;
        case OPT_SCHED: sched_spec = optarg; break;
        case OPT_WARM: warmup = kd_parse_long("--warmup-steps", optarg, 0, 1L << 40); break;
        case OPT_EPOCHS: epochs = kd_parse_double("--epochs", optarg, 0, 1e7); break;
        case OPT_TOTAL: total = kd_parse_long("--total-steps", optarg, 1, 1L << 40); break;
        case OPT_VAL: val = optarg; break;
        case OPT_VALEVERY: val_every = kd_parse_long("--val-every", optarg, 1, 1L << 40); break;
        case OPT_VALLIM: val_limit = kd_parse_long("--val-limit", optarg, 1, 1L << 40); break;
        case OPT_BANK: bank = optarg; break;
        case OPT_BANKLIM: bank_limit = kd_parse_long("--knn-bank-limit", optarg, 1, 1L << 40); break;
        case OPT_CKPT: ckpt = optarg; break;
        case OPT_CKPTEVERY: ckpt_every = kd_parse_long("--ckpt-every", optarg, 1, 1L << 40); break;
        case OPT_RESUME: resume = optarg; break;
        case OPT_LOG: log_path = optarg; break;
        case OPT_LOGEVERY: log_every = kd_parse_long("--log-every", optarg, 1, 1L << 40); break;
        case 'm': model_path = optarg; break;
        case 'o': out = optarg; break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (optind < argc - 1)
        kd_usage("too many arguments");
    const char *in = optind < argc ? argv[optind] : "-";
    if (!L.n)
        kd_usage("--method or --loss is required");
    if (!model_path && !resume)
        kd_usage("-m MODEL.h5 (or --resume CKPT) is required");
    if (!out || !strcmp(out, "-"))
        kd_usage("-o OUT.h5 is required (a file)");
    sched_spec = sched_spec ? sched_spec : "cosine";
    kd_sched sched;
    if (kd_sched_parse(&sched, sched_spec))
        kd_usage("--schedule: %s", kd_err_get());
    int is_moco = 0;
    for (int i = 0; i < L.n; i++)
        is_moco |= !strcmp(L.mod[i]->name, "moco");
    if (val && is_moco && !bank)
        kd_usage("--val with moco needs --knn-bank TRAIN.h5 for the kNN monitor");
    char ckpt_buf[4200];
    if (!ckpt) {
        snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt.h5", out);
        ckpt = ckpt_buf;
    }
    kd_gemm_init(std.threads);
    FILE *logf = stdout;
    if (log_path && !(logf = fopen(log_path, "w")))
        kd_die(KD_EXIT_FAIL, "%s: cannot create the log", log_path);

    /* first frame: shapes */
    kd_reader *rd = kd_reader_open(in);
    if (!rd)
        kd_die_err();
    kd_frame f;
    kd_frame_init(&f);
    int rc = kd_reader_next(rd, &f);
    if (rc < 0)
        kd_die_err();
    if (rc == 0)
        kd_die(KD_EXIT_FAIL, "%s: the stream is empty: nothing to train on", in);
    kd_tensor *v0 = kd_frame_need(&f, "view0", KD_F32, 4);
    if (!v0) {
        kd_err_prefix("%s: frame 0", in);
        kd_die_err();
    }
    int B = (int)v0->dims[0], C = (int)v0->dims[1], H = (int)v0->dims[2], W = (int)v0->dims[3];
    long batches = (long)kd_frame_meta_i64(&f, "batches", 0);

    /* model, possibly from a checkpoint */
    trainer t = {0};
    t.L = &L;
    kd_h5 rh;
    int resumed = 0;
    if (resume) {
        if (kd_h5_open(&rh, resume, "model"))
            kd_die_err();
        int64_t s = 0, e = 0;
        if (kd_h5_attr_get_i64(&rh, "train", "step", &s) || kd_h5_attr_get_i64(&rh, "train", "epoch", &e))
            kd_die(KD_EXIT_FAIL, "%s: not a distill-step checkpoint (no training state)", resume);
        t.m = kd_model_load_h5(&rh);
        t.step = (long)s;
        t.epoch = (long)e;
        resumed = 1;
    } else
        t.m = kd_model_load(model_path);
    if (!t.m)
        kd_die_err();
    if (C != kd_model_opts(t.m)->in_channels)
        kd_die(KD_EXIT_FAIL, "%s: view0 has %d channels but the model takes %d", in, C, kd_model_opts(t.m)->in_channels);
    if (kd_model_prepare(t.m, B, H, W))
        kd_die_err();
    lo.seed = std.seed;
    lo.max_batch = B;
    lo.h = H;
    lo.w = W;
    for (int i = 0; i < L.n; i++)
        if (!(L.st[i] = L.mod[i]->init(t.m, &lo)))
            kd_die_err();
    if (kd_sgd_init(&t.opt, t.m, &so))
        kd_die_err();
    if (resumed) {
        int bad = kd_h5_expect(&rh, "train/momentum", 1, (int64_t[]){(int64_t)t.opt.n}, NULL) ||
                  kd_h5_read(&rh, "train/momentum", KD_F32, 0, (int64_t)t.opt.n, t.opt.buf);
        for (int i = 0; !bad && i < L.n; i++) {
            char g[128];
            snprintf(g, sizeof g, "train/%s", L.mod[i]->name);
            bad = L.mod[i]->load && L.mod[i]->load(L.st[i], &rh, g);
        }
        if (bad)
            kd_die_err();
        kd_h5_close(&rh);
    }
    if (lr_scale)
        lr *= B / 256.0;
    sched.base = lr;
    sched.warmup = warmup;
    sched.total = total ? total : (long)(epochs * (double)batches);
    if (sched.kind == KD_SCHED_COSINE && sched.total <= 0)
        kd_usage("--schedule cosine needs --epochs (with 'batches' in the stream) or --total-steps");

    /* buffers for the loss gradients; nothing is allocated inside the loop */
    int D = kd_model_feat_dim(t.m), K = kd_model_num_classes(t.m), E = kd_model_emb_dim(t.m);
    float *dfeat = calloc((size_t)B * D, sizeof(float)), *dlog = calloc((size_t)B * (K ? K : 1), sizeof(float)),
          *demb = calloc((size_t)B * (E ? E : 1), sizeof(float));
    validator V = {.knn = is_moco || !K, .B = B, .D = D, .K = K};
    if (val) {
        if (kd_evalset_load(&V.vs, val, val_limit, H, W) ||
            (bank && kd_evalset_load(&V.bs, bank, bank_limit, H, W)))
            kd_die_err();
        V.vout = malloc(sizeof(float) * (size_t)V.vs.n * (V.knn ? D : K));
        V.bout = bank ? malloc(sizeof(float) * (size_t)V.bs.n * D) : NULL;
        V.pred = malloc(sizeof(int32_t) * (size_t)V.vs.n);
        if (V.vs.c != C)
            kd_die(KD_EXIT_FAIL, "%s: %d channels, the stream has %d", val, V.vs.c, C);
        if (V.knn && !bank)
            kd_usage("--val without a classifier needs --knn-bank TRAIN.h5 for the kNN monitor");
    }
    if (!dfeat || !dlog || !demb || (val && (!V.vout || !V.pred || (bank && !V.bout))))
        kd_die(KD_EXIT_FAIL, "out of memory");

    size_t np, ng;
    float *P = kd_model_params(t.m, &np), *G = kd_model_grads(t.m, &ng);
    long start = t.step, frames = 0;
    double t0 = kd_now(), tlast = t0;
    long imgs_since = 0;
    if (val && start == 0 && validate(&V, &t, logf)) /* the network at initialisation */
        kd_die_err();
    tlast = kd_now(); /* img_s counts training, not validation */
    do {
        long fstep = (long)kd_frame_meta_i64(&f, "step", frames);
        frames++;
        if (fstep < start)
            continue; /* resume: already trained on */
        kd_tensor *x0 = kd_frame_need(&f, "view0", KD_F32, 4);
        if (!x0) {
            kd_err_prefix("%s: frame %ld", in, frames - 1);
            kd_die_err();
        }
        int n = (int)x0->dims[0];
        if (n > B || x0->dims[1] != C || x0->dims[2] != H || x0->dims[3] != W)
            kd_die(KD_EXIT_FAIL, "%s: frame %ld: view0 is [%d,%lld,%lld,%lld], the first frame's was [%d,%d,%d,%d]",
                   in, frames - 1, n, (long long)x0->dims[1], (long long)x0->dims[2], (long long)x0->dims[3], B, C, H, W);
        kd_tensor *x1 = kd_frame_get(&f, "view1"), *lab = kd_frame_get(&f, "label");
        if (x1 && (x1->dtype != KD_F32 || x1->nbytes != x0->nbytes))
            kd_die(KD_EXIT_FAIL, "%s: frame %ld: view1 does not match view0", in, frames - 1);
        if (lab && (lab->dtype != KD_I32 || kd_tensor_numel(lab) != n))
            kd_die(KD_EXIT_FAIL, "%s: frame %ld: label is not i32 [%d]", in, frames - 1, n);
        t.epoch = (long)kd_frame_meta_i64(&f, "epoch", t.epoch);
        kd_loss_batch b = {&f, x0->data, x1 ? x1->data : NULL, lab ? lab->data : NULL, n, t.step, t.m,
                           NULL, NULL, NULL, dfeat, dlog, demb};
        for (int i = 0; i < L.n; i++)
            if (L.mod[i]->pre && L.mod[i]->pre(L.st[i], &b))
                kd_die_err();
        kd_model_zero_grad(t.m);
        if (kd_model_forward(t.m, b.view0, n, 1, 0))
            kd_die_err();
        b.feat = kd_model_features(t.m);
        b.logits = kd_model_logits(t.m);
        b.emb = kd_model_embedding(t.m);
        memset(dfeat, 0, sizeof(float) * (size_t)n * D);
        if (K)
            memset(dlog, 0, sizeof(float) * (size_t)n * K);
        if (E)
            memset(demb, 0, sizeof(float) * (size_t)n * E);
        double terms[MAXL], total_loss = 0;
        for (int i = 0; i < L.n; i++) {
            if (L.mod[i]->compute(L.st[i], &b, L.w[i], &terms[i]))
                kd_die_err();
            total_loss += L.w[i] * terms[i];
        }
        if (!isfinite(total_loss))
            kd_die(KD_EXIT_FAIL, "step %ld: loss is not finite (%g); the last checkpoint is %s", t.step, total_loss,
                   ckpt_every ? ckpt : "none");
        if (kd_model_backward(t.m, dfeat, K ? dlog : NULL, E ? demb : NULL, NULL))
            kd_die_err();
        double epoch_f = batches > 0 ? (double)t.step / (double)batches : (double)t.epoch;
        float cur_lr = (float)kd_sched_lr(&sched, t.step, epoch_f);
        kd_sgd_step(&t.opt, P, G, cur_lr);
        for (int i = 0; i < L.n; i++)
            if (L.mod[i]->post && L.mod[i]->post(L.st[i], &b))
                kd_die_err();
        t.step++;
        imgs_since += n;
        if (t.step % log_every == 0) {
            double now = kd_now();
            kd_json j;
            kd_json_begin(&j, logf);
            kd_json_int(&j, "step", t.step);
            kd_json_int(&j, "epoch", t.epoch);
            kd_json_num(&j, "loss", total_loss);
            for (int i = 0; i < L.n; i++) {
                char key[64];
                snprintf(key, sizeof key, "loss_%s", L.mod[i]->name);
                kd_json_num(&j, key, terms[i]);
            }
            kd_json_num(&j, "lr", cur_lr);
            kd_json_num(&j, "img_s", imgs_since / (now - tlast > 1e-9 ? now - tlast : 1e-9));
            kd_json_end(&j);
            tlast = now;
            imgs_since = 0;
        }
        kd_progress(&std, "step %ld epoch %ld loss %.4f lr %.4g", t.step, t.epoch, total_loss, cur_lr);
        if (val && val_every && t.step % val_every == 0) {
            if (validate(&V, &t, logf))
                kd_die_err();
            tlast = kd_now();
        }
        if (ckpt_every && t.step % ckpt_every == 0 && save_all(&t, ckpt))
            kd_die_err();
    } while ((rc = kd_reader_next(rd, &f)) == 1);
    kd_progress_end(&std);
    if (rc < 0)
        kd_die_err();
    if (t.step == start)
        kd_die(KD_EXIT_FAIL, "%s: no frame after step %ld: nothing trained", in, start);
    if (val && !(val_every && t.step % val_every == 0) && validate(&V, &t, logf))
        kd_die_err();
    if (save_all(&t, out))
        kd_die_err();
    kd_json j;
    kd_json_begin(&j, logf);
    kd_json_str(&j, "output", out);
    kd_json_int(&j, "steps", t.step);
    kd_json_num(&j, "seconds", kd_now() - t0);
    kd_json_end(&j);
    if (logf != stdout && fclose(logf))
        kd_die(KD_EXIT_FAIL, "%s: write error", log_path);
    kd_reader_close(rd);
    kd_frame_free(&f);
    for (int i = 0; i < L.n; i++)
        if (L.mod[i]->free)
            L.mod[i]->free(L.st[i]);
    kd_sgd_free(&t.opt);
    kd_model_free(t.m);
    kd_evalset_free(&V.vs);
    kd_evalset_free(&V.bs);
    free(V.vout), free(V.bout), free(V.pred), free(dfeat), free(dlog), free(demb);
    return 0;
}
