/* distill-step — train a model from a stream, one optimisation step per
 * frame: options, then the stream loop around kd_train. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_dist.h"
#include "kd_gemm.h"
#include "kd_loss.h"
#include "kd_model_io.h"
#include "kd_stream.h"
#include "kd_train.h"

static const char help_head[] =
    "Usage: augment ... | distill-step --loss NAME[:W][,NAME:W...] -m INIT.h5 -o OUT.h5 [OPTION]...\n"
    "Train a model on a kdpipe stream: one SGD step per frame.\n"
    "\n"
    "Losses:\n"
    "  --loss NAME:W[,..]  losses with weights, e.g. moco:1 or ce:0.5,ce:0.5 (repeatable)\n"
    "  --method NAME       shorthand for --loss NAME:1\n"
    "  --loss-opt L.OPT=V  set option OPT of loss L (L.wd: weight decay of the loss's\n"
    "                      own parameters, default --wd);  --OPT V sets it for every\n"
    "                      selected loss that has it\n"
    "The losses and their options:\n";

static const char help_tail[] =
    "Optimiser and schedule:\n"
    "  --lr LR             base learning rate (default 0.03)\n"
    "  --lr-scale-batch    multiply --lr by batch/256\n"
    "  --momentum M        SGD momentum (0.9);  --nesterov\n"
    "  --wd W              weight decay (1e-4);  --wd-exclude-bn-bias\n"
    "  --lars ETA          LARS: scale each weight tensor's step by its trust ratio\n"
    "                      ETA*|w|/|g+wd*w| (BN and biases unscaled), e.g. 0.001\n"
    "  --schedule S        const, cosine (default) or step:E1,E2,... (x0.1 at epochs)\n"
    "  --warmup-steps N    linear warmup\n"
    "  --epochs E          epochs of the schedule (default: the stream's 'epochs';\n"
    "                      steps per epoch from its 'batches')\n"
    "  --total-steps N     the schedule's length in steps (overrides both)\n"
    "Evaluation, checkpoints, log:\n"
    "  --val DATASET.h5    evaluate before the first step, every --val-every steps\n"
    "                      and after the last: top-1 of the logits, or weighted kNN\n"
    "                      top-1 (losses that learn representations, or no classifier)\n"
    "                      against features of --knn-bank DATASET.h5\n"
    "  --val-every N       (default: at the end only)\n"
    "  --val-limit N       first N validation images;  --knn-bank-limit N (10000)\n"
    "  --knn-k K           neighbours of the kNN monitor (20);  --knn-t T (0.07)\n"
    "  --ckpt FILE         checkpoint path (default OUT.ckpt.h5);  --ckpt-every N steps\n"
    "  --resume CKPT       continue from a checkpoint: frames before its step are skipped\n"
    "  --log FILE          JSON-lines log there instead of stdout;  --log-every N (1)\n"
    "Several processes (mpirun -np N, each reading augment --shard R/N):\n"
    "  --sync-bn           BN statistics over the global batch (default: per rank);\n"
    "                      the log, validation, checkpoints and OUT are rank 0's\n"
    "Common: -m MODEL.h5, -o OUT.h5, --seed S, --threads N, --quiet, -h, --version\n"
    "See distill-step(1).\n";

enum { OPT_METHOD = KD_OPT_PROG, OPT_LOSS, OPT_LOSSOPT, OPT_LR, OPT_LRSCALE, OPT_MOM, OPT_NEST, OPT_WD, OPT_WDX,
       OPT_SCHED, OPT_WARM, OPT_EPOCHS, OPT_TOTAL, OPT_VAL, OPT_VALEVERY, OPT_VALLIM, OPT_BANK, OPT_BANKLIM,
       OPT_KNNK, OPT_KNNT, OPT_CKPT, OPT_CKPTEVERY, OPT_RESUME, OPT_LOG, OPT_LOGEVERY, OPT_LARS, OPT_SYNCBN,
       OPT_LOSSFLAG = KD_OPT_PROG + 0x100 /* + index into flags[] */ };
static const struct option prog_opts[] = {
    {"method", required_argument, 0, OPT_METHOD}, {"loss", required_argument, 0, OPT_LOSS},
    {"loss-opt", required_argument, 0, OPT_LOSSOPT},
    {"lr", required_argument, 0, OPT_LR}, {"lr-scale-batch", no_argument, 0, OPT_LRSCALE},
    {"momentum", required_argument, 0, OPT_MOM}, {"nesterov", no_argument, 0, OPT_NEST},
    {"wd", required_argument, 0, OPT_WD}, {"wd-exclude-bn-bias", no_argument, 0, OPT_WDX},
    {"lars", required_argument, 0, OPT_LARS},
    {"schedule", required_argument, 0, OPT_SCHED}, {"warmup-steps", required_argument, 0, OPT_WARM},
    {"epochs", required_argument, 0, OPT_EPOCHS}, {"total-steps", required_argument, 0, OPT_TOTAL},
    {"val", required_argument, 0, OPT_VAL}, {"val-every", required_argument, 0, OPT_VALEVERY},
    {"val-limit", required_argument, 0, OPT_VALLIM}, {"knn-bank", required_argument, 0, OPT_BANK},
    {"knn-bank-limit", required_argument, 0, OPT_BANKLIM}, {"knn-k", required_argument, 0, OPT_KNNK},
    {"knn-t", required_argument, 0, OPT_KNNT}, {"ckpt", required_argument, 0, OPT_CKPT},
    {"ckpt-every", required_argument, 0, OPT_CKPTEVERY}, {"resume", required_argument, 0, OPT_RESUME},
    {"sync-bn", no_argument, 0, OPT_SYNCBN}, {"log", required_argument, 0, OPT_LOG}, {"log-every", required_argument, 0, OPT_LOGEVERY},
    {"model", required_argument, 0, 'm'}, {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS};

/* The losses chosen, and the option settings in command-line order: a
 * setting names one loss ("moco.queue") or every loss that has it. */
#define MAXSET 64
typedef struct {
    const kd_loss_module *mod[KD_TRAIN_MAX_LOSSES];
    float w[KD_TRAIN_MAX_LOSSES], own_wd[KD_TRAIN_MAX_LOSSES];
    void *opts[KD_TRAIN_MAX_LOSSES];
    int n;
    struct {
        char loss[48], opt[48], val[KD_LOPT_STR_MAX];
        const char *flag; /* as the user wrote it */
    } set[MAXSET];
    int nset;
} choice;

static void parse_losses(choice *L, const char *spec)
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
        if (!m)
            kd_usage("--loss: unknown loss '%s' (known: %s)", tok, kd_loss_names());
        if (L->n == KD_TRAIN_MAX_LOSSES)
            kd_usage("--loss: at most %d losses", KD_TRAIN_MAX_LOSSES);
        L->mod[L->n] = m;
        L->own_wd[L->n] = -1;
        L->w[L->n++] = w;
    }
}

static void add_setting(choice *L, const char *loss, const char *opt, const char *val, const char *flag)
{
    if (L->nset == MAXSET)
        kd_usage("at most %d loss options", MAXSET);
    if (strlen(loss) >= sizeof L->set[0].loss || strlen(opt) >= sizeof L->set[0].opt ||
        strlen(val) >= sizeof L->set[0].val)
        kd_usage("%s: too long", flag);
    snprintf(L->set[L->nset].loss, sizeof L->set[0].loss, "%s", loss);
    snprintf(L->set[L->nset].opt, sizeof L->set[0].opt, "%s", opt);
    snprintf(L->set[L->nset].val, sizeof L->set[0].val, "%s", val);
    L->set[L->nset++].flag = flag;
}

/* Defaults, then every setting in order; an option no chosen loss takes is
 * a usage error rather than silently ignored. */
static void resolve_settings(choice *L)
{
    for (int i = 0; i < L->n; i++) {
        if (!(L->opts[i] = calloc(1, L->mod[i]->opts_size ? L->mod[i]->opts_size : 1)))
            kd_die(KD_EXIT_FAIL, "out of memory");
        if (kd_loss_opts_defaults(L->mod[i], L->opts[i]))
            kd_die_err();
    }
    for (int k = 0; k < L->nset; k++) {
        const char *loss = L->set[k].loss, *opt = L->set[k].opt, *val = L->set[k].val;
        int hit = 0;
        for (int i = 0; i < L->n; i++) {
            if (loss[0] && strcmp(loss, L->mod[i]->name))
                continue;
            if (loss[0] && !strcmp(opt, "wd")) {
                L->own_wd[i] = (float)kd_parse_double(L->set[k].flag, val, 0, 1);
                hit = 1;
                continue;
            }
            if (!loss[0] && !kd_loss_opt_find(L->mod[i], opt))
                continue; /* --NAME sets the losses that have NAME; LOSS.NAME must exist */
            if (kd_loss_opts_set(L->mod[i], L->opts[i], opt, val))
                kd_usage("%s: %s", L->set[k].flag, kd_err_get());
            hit = 1;
        }
        if (!hit && loss[0])
            kd_usage("%s: no loss '%s' is selected", L->set[k].flag, loss);
        if (!hit) {
            char has[256] = "";
            for (int j = 0; kd_loss_modules[j]; j++)
                if (kd_loss_opt_find(kd_loss_modules[j], opt))
                    snprintf(has + strlen(has), sizeof has - strlen(has), " %s", kd_loss_modules[j]->name);
            kd_usage("--%s: none of the selected losses takes it (it is an option of:%s)", opt, has);
        }
    }
}

/* getopt_long's table: the program's options, then one flag per distinct
 * loss option name of the registry. */
static const char *flags[128];
static char flag_text[128][56]; /* "--NAME", for messages */
static struct option longopts[sizeof prog_opts / sizeof prog_opts[0] + 129];

static void build_longopts(void)
{
    size_t n = 0, nf = 0;
    for (; n < sizeof prog_opts / sizeof prog_opts[0]; n++)
        longopts[n] = prog_opts[n];
    for (int i = 0; kd_loss_modules[i]; i++)
        for (const kd_loss_opt *o = kd_loss_modules[i]->opts; o && o->name; o++) {
            size_t j = 0;
            while (j < nf && strcmp(flags[j], o->name))
                j++;
            if (j < nf || nf == 128)
                continue;
            /* a loss option must not shadow the program's own (getopt
             * would take the first): a registry bug, caught at start-up */
            for (size_t k = 0; k < n; k++)
                if (!strcmp(longopts[k].name, o->name))
                    kd_die(KD_EXIT_FAIL, "loss %s: option --%s collides with distill-step's own", kd_loss_modules[i]->name,
                           o->name);
            flags[nf] = o->name;
            snprintf(flag_text[nf], sizeof flag_text[nf], "--%s", o->name);
            longopts[n++] = (struct option){o->name, required_argument, 0, OPT_LOSSFLAG + (int)nf};
            nf++;
        }
    longopts[n] = (struct option){0, 0, 0, 0};
}

static char *help_text(void)
{
    /* built once: tests/fuzz/fuzz_opts.c runs main many times in a process */
    static char *buf;
    size_t len = 0;
    if (buf)
        return buf;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fputs(help_head, f);
    kd_loss_help(f);
    fputs(help_tail, f);
    if (fclose(f)) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* The log's reader may go away (distill-step ... | head): training goes on
 * without the log rather than dying of SIGPIPE; any other write error
 * (a full disk) fails the run at the end, since its log is then incomplete. */
static int log_lost, log_errno;
static void log_check(FILE **logf)
{
    if (!ferror(*logf))
        return;
    if (!log_errno)
        log_errno = errno; /* fresh: the check follows each line's fflush */
    if (log_errno == EPIPE && !log_lost) {
        kd_warn("the log's reader is gone; training goes on without the log");
        log_lost = 1;
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            if (*logf != stdout)
                fclose(*logf);
            *logf = null;
        }
    }
}

static void log_val(kd_trainer *t, FILE *logf)
{
    const char *name;
    double top1;
    if (kd_trainer_validate(t, &name, &top1))
        kd_die_err();
    kd_json j;
    kd_json_begin(&j, logf);
    kd_json_int(&j, "step", kd_trainer_steps(t));
    kd_json_int(&j, "epoch", kd_trainer_epoch(t));
    kd_json_num(&j, name, top1);
    kd_json_end(&j);
}

static void log_step(kd_trainer *t, FILE *logf, double img_s)
{
    const kd_step_info *s = kd_trainer_last(t);
    kd_json j;
    kd_json_begin(&j, logf);
    kd_json_int(&j, "step", kd_trainer_steps(t));
    kd_json_int(&j, "epoch", kd_trainer_epoch(t));
    kd_json_num(&j, "loss", s->loss);
    for (int i = 0; i < kd_trainer_nlosses(t); i++) {
        char key[64];
        snprintf(key, sizeof key, "loss_%s", kd_trainer_loss_name(t, i));
        kd_json_num(&j, key, s->term[i]);
    }
    kd_json_num(&j, "lr", s->lr);
    kd_json_num(&j, "img_s", img_s);
    kd_json_end(&j);
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    char *help = help_text();
    kd_cli_init(&argv[0], help ? help : help_tail, &std);
    kd_cli_version_note(kd_dist_describe());
    build_longopts();
    const char *model_path = NULL, *out = NULL, *val = NULL, *bank = NULL, *ckpt = NULL, *resume = NULL,
               *log_path = NULL;
    choice L = {.n = 0};
    kd_train_opts to = {.sgd = {.momentum = 0.9f, .wd = 1e-4f}, .schedule = "cosine", .lr = 0.03};
    long val_every = 0, ckpt_every = 0, log_every = 1;
    int64_t val_limit = 0, bank_limit = 10000;
    int knn_k = 20;
    float knn_t = 0.07f;
    int opt;
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        if (opt >= OPT_LOSSFLAG && opt < OPT_LOSSFLAG + 128) {
            add_setting(&L, "", flags[opt - OPT_LOSSFLAG], optarg, flag_text[opt - OPT_LOSSFLAG]);
            continue;
        }
        switch (opt) {
        case OPT_METHOD:
            if (strchr(optarg, ':') || strchr(optarg, ','))
                kd_usage("--method: one loss name, without weight ('%s'; several: --loss)", optarg);
            parse_losses(&L, optarg);
            break;
        case OPT_LOSS: parse_losses(&L, optarg); break;
        case OPT_LOSSOPT: {
            const char *dot = strchr(optarg, '.'), *eq = strchr(optarg, '=');
            if (!dot || !eq || eq < dot || dot == optarg || eq == dot + 1)
                kd_usage("--loss-opt: '%s' is not LOSS.OPTION=VALUE", optarg);
            char loss[48], name[48];
            snprintf(loss, sizeof loss, "%.*s", (int)(dot - optarg), optarg);
            snprintf(name, sizeof name, "%.*s", (int)(eq - dot - 1), dot + 1);
            add_setting(&L, loss, name, eq + 1, "--loss-opt");
            break;
        }
        case OPT_LR: to.lr = kd_parse_double("--lr", optarg, 0, 1e3); break;
        case OPT_LRSCALE: to.lr_scale_batch = 1; break;
        case OPT_MOM: to.sgd.momentum = (float)kd_parse_double("--momentum", optarg, 0, 1); break;
        case OPT_NEST: to.sgd.nesterov = 1; break;
        case OPT_WD: to.sgd.wd = (float)kd_parse_double("--wd", optarg, 0, 1); break;
        case OPT_WDX: to.sgd.wd_exclude = 1; break;
        case OPT_LARS: to.sgd.lars_eta = (float)kd_parse_double("--lars", optarg, 1e-9, 1e3); break;
        case OPT_SCHED: to.schedule = optarg; break;
        case OPT_WARM: to.warmup_steps = kd_parse_long("--warmup-steps", optarg, 0, 1L << 40); break;
        case OPT_EPOCHS: to.epochs = kd_parse_double("--epochs", optarg, 1e-9, 1e7); break;
        case OPT_TOTAL: to.total_steps = kd_parse_long("--total-steps", optarg, 1, 1L << 40); break;
        case OPT_VAL: val = optarg; break;
        case OPT_VALEVERY: val_every = kd_parse_long("--val-every", optarg, 1, 1L << 40); break;
        case OPT_VALLIM: val_limit = kd_parse_long("--val-limit", optarg, 1, 1L << 40); break;
        case OPT_BANK: bank = optarg; break;
        case OPT_BANKLIM: bank_limit = kd_parse_long("--knn-bank-limit", optarg, 1, 1L << 40); break;
        case OPT_KNNK: knn_k = (int)kd_parse_long("--knn-k", optarg, 1, 10000); break;
        case OPT_KNNT: knn_t = (float)kd_parse_double("--knn-t", optarg, 1e-4, 100); break;
        case OPT_CKPT: ckpt = optarg; break;
        case OPT_CKPTEVERY: ckpt_every = kd_parse_long("--ckpt-every", optarg, 1, 1L << 40); break;
        case OPT_RESUME: resume = optarg; break;
        case OPT_SYNCBN: to.sync_bn = 1; break;
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
    {
        kd_sched probe;
        if (kd_sched_parse(&probe, to.schedule))
            kd_usage("--schedule: %s", kd_err_get());
    }
    resolve_settings(&L);
    if (val && !bank)
        for (int i = 0; i < L.n; i++)
            if (L.mod[i]->monitor == KD_MONITOR_KNN)
                kd_usage("--val with loss %s needs --knn-bank TRAIN.h5 for its kNN monitor", L.mod[i]->name);
    to.seed = std.seed;
    char ckpt_buf[4200];
    if (!ckpt) {
        snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt.h5", out);
        ckpt = ckpt_buf;
    }
    if (kd_dist_init(&argc, &argv))
        kd_die_err();
    /* rank 0 writes (log, checkpoints, OUT) and validates; the others train */
    const int R = kd_dist_size(), rank0 = kd_dist_rank() == 0;
    static char name[64];
    if (R > 1) {
        snprintf(name, sizeof name, "%s (rank %d of %d)", kd_progname, kd_dist_rank(), R);
        kd_progname = name;
    }
    if (!rank0)
        std.quiet = 1, val = NULL, log_path = "/dev/null", ckpt_every = 0;
    if (rank0) {
        kd_cli_output(out); /* found unwritable at the start, not after the training */
        kd_cli_output(ckpt);
    }
    if (kd_gemm_init(kd_cli_threads(&std)))
        kd_die_err();
    signal(SIGPIPE, SIG_IGN);

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

    kd_model *m = kd_model_load(resume ? resume : model_path);
    if (!m)
        kd_die_err();
    kd_trainer *t = kd_trainer_new(m, &to);
    if (!t)
        kd_die_err();
    for (int i = 0; i < L.n; i++)
        if (kd_trainer_add_loss(t, L.mod[i], L.w[i], L.opts[i], L.own_wd[i]))
            kd_die_err();
    rc = kd_trainer_init(t, &f);
    if (rc == KD_TRAIN_NO_LENGTH && to.epochs > 0)
        kd_usage("--epochs needs the stream's 'batches' metadata (batches per epoch, which augment writes) to make "
                 "steps of epochs: give --total-steps N");
    if (rc == KD_TRAIN_NO_LENGTH)
        kd_usage("--schedule %s needs the run's length, and the stream does not say it (augment writes 'epochs' "
                 "and 'batches' into every frame): give --epochs E or --total-steps N",
                 to.schedule);
    if (rc) {
        kd_err_prefix("%s", in);
        kd_die_err();
    }
    for (int i = 0; i < L.n; i++)
        if (L.own_wd[i] >= 0 && !kd_trainer_loss_owns_params(t, i))
            kd_usage("--loss-opt %s.wd: loss %s owns no parameters", L.mod[i]->name, L.mod[i]->name);
    if (resume && kd_trainer_resume(t, resume))
        kd_die_err();
    if (val && kd_trainer_set_val(t, val, val_limit, bank, bank_limit, knn_k, knn_t)) {
        if (!bank && kd_trainer_monitor(t) == KD_MONITOR_KNN)
            kd_usage("--val with these losses (or without a classifier) needs --knn-bank TRAIN.h5 for the kNN monitor");
        kd_die_err();
    }

    /* opened once the inputs are known good: a refused run keeps the old log */
    FILE *logf = stdout;
    if (log_path && !(logf = fopen(log_path, "w")))
        kd_die(KD_EXIT_FAIL, "%s: cannot create the log: %s", log_path, strerror(errno));
    long start = kd_trainer_steps(t), frames = 0, total = kd_trainer_total(t), epochs = kd_trainer_epochs(t);
    double t0 = kd_now(), tlast, trun = 0, loss_avg = 0;
    long imgs_since = 0, imgs_run = 0;
    if (val && start == 0) {
        log_val(t, logf); /* the network as initialised */
        log_check(&logf);
    }
    tlast = kd_now();     /* img_s counts training, not validation */
    do {
        double ts = kd_now();
        if (kd_trainer_dist_check(t, &f, frames))
            kd_die_err();
        rc = kd_trainer_step(t, &f, frames++);
        if (rc < 0) {
            if (rc == KD_TRAIN_NOT_FINITE)
                kd_die(KD_EXIT_FAIL, "%s; the last checkpoint is %s", kd_err_get(), ckpt_every ? ckpt : "none");
            kd_die_err(); /* "frame N: ..." */
        }
        if (rc == 0)
            continue;
        const kd_step_info *si = kd_trainer_last(t);
        long step = kd_trainer_steps(t);
        trun += kd_now() - ts;
        imgs_since += (long)si->n * R; /* the global batch */
        imgs_run += (long)si->n * R;
        loss_avg = step - start == 1 ? si->loss : 0.98 * loss_avg + 0.02 * si->loss;
        if (step % log_every == 0) {
            double now = kd_now();
            log_step(t, logf, imgs_since / (now - tlast > 1e-9 ? now - tlast : 1e-9));
            log_check(&logf);
            tlast = now;
            imgs_since = 0;
        }
        double rate = trun > 0 ? (double)(step - start) / trun : 0;
        char ep[48] = "";
        if (epochs > 0)
            snprintf(ep, sizeof ep, "epoch %ld/%ld", kd_trainer_epoch(t) + 1, epochs);
        else
            snprintf(ep, sizeof ep, "epoch %ld", kd_trainer_epoch(t) + 1);
        kd_progress_run(&std, step, total, rate, "step", "%s loss %.4f %.0f img/s", ep, loss_avg,
                        trun > 0 ? imgs_run / trun : 0.0);
        if (val && val_every && step % val_every == 0) {
            log_val(t, logf);
            log_check(&logf);
            tlast = kd_now();
        }
        if (ckpt_every && step % ckpt_every == 0 && kd_trainer_save(t, ckpt))
            kd_die_err();
    } while ((rc = kd_reader_next(rd, &f)) == 1);
    kd_progress_end(&std);
    if (rc < 0)
        kd_die_err();
    if (kd_trainer_dist_check(t, NULL, frames)) /* every rank's stream ended here too */
        kd_die_err();
    long steps = kd_trainer_steps(t);
    /* a checkpoint of the finished run has nothing left to train: its
     * model is the output */
    int finished = steps == start && total > 0 && start >= total;
    if (steps == start && !finished)
        kd_die(KD_EXIT_FAIL, "%s: no frame after step %ld: nothing trained", in, start);
    /* A complete stream shorter than the schedule its frames announce (a
     * filter that dropped frames) would deploy a model whose learning rate
     * never reached the schedule's end: keep the state, not the model.  A
     * length given by --epochs or --total-steps is the user's (a run stopped
     * on purpose, to be resumed). */
    if (to.total_steps <= 0 && to.epochs <= 0 && total > 0 && steps < total) {
        if (rank0 && kd_trainer_save(t, ckpt))
            kd_die_err();
        kd_die(KD_EXIT_FAIL, "%s: the stream ended at step %ld of the %ld its frames announce (epochs x batches): "
               "%s is not written; %s holds step %ld", in, steps, total, out, ckpt, steps);
    }
    if (val && !finished && !(val_every && steps % val_every == 0))
        log_val(t, logf);
    /* the deployed model, and the state to continue from */
    if (rank0 && (kd_trainer_save(t, ckpt) || kd_model_save(kd_trainer_model(t), out)))
        kd_die_err();
    kd_json j;
    kd_json_begin(&j, logf);
    kd_json_str(&j, "output", out);
    kd_json_int(&j, "steps", steps);
    kd_json_num(&j, "seconds", kd_now() - t0);
    kd_json_end(&j);
    log_check(&logf);
    if (!log_lost && (fflush(logf) || ferror(logf) || (logf != stdout && fclose(logf))))
        kd_die(KD_EXIT_FAIL, "%s: write error (%s): the log is incomplete", log_path ? log_path : "stdout",
               strerror(log_errno ? log_errno : errno));
    kd_reader_close(rd);
    kd_frame_free(&f);
    kd_trainer_free(t);
    if (kd_dist_finalize())
        kd_die_err();
    for (int i = 0; i < L.n; i++)
        free(L.opts[i]);
    free(help);
    return 0;
}
