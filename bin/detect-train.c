/* detect-train — a CenterNet-style detection + segmentation head on a
 * backbone, trained on scenes (dataset --scenes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_coco.h"
#include "kd_dataset.h"
#include "kd_detnet.h"
#include "kd_gemm.h"
#include "kd_model_io.h"
#include "kd_optim.h"
#include "kd_dist.h"
#include "kd_rng.h"
#include "kd_seg.h"

static const char help[] =
    "Usage: detect-train -m BACKBONE.h5 --train SCENES.h5 -o DETECTOR.h5 [OPTION]...\n"
    "Train a CenterNet-style head (class heatmap, box size, centre offset) and a\n"
    "per-pixel segmentation head on a backbone stage map, on a detection dataset\n"
    "(dataset --scenes).  Writes the backbone and the head as one model file.\n"
    "\n"
    "  -m, --model FILE      backbone model file (model-init, distill-step)\n"
    "  --train FILE          training scenes (/boxes, /box_labels, /box_offsets, /masks)\n"
    "  -o, --output FILE     the detector (for detect)\n"
    "  --stride S            output stride, 4 (default) or 8\n"
    "  --stage K             backbone stage (default: the deepest that, upsampled by\n"
    "                        x2 steps, gives stride S)\n"
    "  --up-channels N       channels of the upsampling path (default 64)\n"
    "  --head-channels N     hidden channels of each head (default 64)\n"
    "  --seg-skip STAGE      masks also from that backbone stage, a finer one, as FCN's\n"
    "                        skip (default 0: from the head's stride-S map alone)\n"
    "  --freeze-backbone     backbone in eval mode, not trained\n"
    "  --steps N             training steps (default 1000)\n"
    "  --batch N             scenes per step (default 16)\n"
    "  --lr LR               base learning rate (default 0.02)\n"
    "  --schedule S          cosine (default), const or step:E1,E2 (fractions of --steps: step:0.6,0.8)\n"
    "  --warmup N            linear warmup steps (default 0)\n"
    "  --momentum M          SGD momentum (default 0.9)\n"
    "  --wd W                weight decay (default 1e-4; not on BN parameters and biases)\n"
    "  --clip-grad N         scale the gradients to global L2 norm at most N (0: off;\n"
    "                        default 0), as torch.nn.utils.clip_grad_norm_\n"
    "  --hm-weight W, --wh-weight W, --off-weight W, --seg-weight W\n"
    "                        loss weights (default 1, 0.1, 1, 5; --seg-weight 0: no masks needed)\n"
    "  --flip P              horizontal flip probability (default 0.5)\n"
    "  --scale-jitter J      scale factor uniform in [1-J, 1+J] (default 0.2)\n"
    "  --val FILE            validation scenes: AP and mIoU every --val-every steps and at the end\n"
    "  --val-every N         (default 0: only at the end)\n"
    "  --val-limit N         the first N validation scenes\n"
    "  --val-flip-test       validate as detect --flip-test does (each scene merged with its mirror)\n"
    "  --log-every N         a JSON line of the losses every N steps (default 50)\n"
    "  --checkpoint FILE     a checkpoint every --checkpoint-every steps and at the end\n"
    "  --checkpoint-every N  (default 0: only at the end)\n"
    "  --resume FILE         continue a checkpoint, bit-identically\n"
    "  --init DETECTOR       start from a trained detector (backbone and heads), with a\n"
    "                        new schedule and optimiser: fine-tune it further\n"
    "  --sync-bn             under mpirun: BN statistics over the global batch\n"
    "  --threads N, --seed S, --quiet, -h/--help, --version\n"
    "\n"
    "Prints JSON lines on stdout: losses ({\"step\", \"loss\", \"hm\", \"wh\", \"off\",\n"
    "\"seg\", \"lr\"}) and validations ({\"step\", \"AP\", \"AP50\", \"AP75\", \"mIoU\"}).\n"
    "See detect-train(1).\n";

enum { OPT_TRAIN = KD_OPT_PROG, OPT_STRIDE, OPT_STAGE, OPT_UPC, OPT_HC, OPT_FREEZE, OPT_STEPS, OPT_BATCH, OPT_LR,
       OPT_SCHED, OPT_WARM, OPT_MOM, OPT_WD, OPT_WHM, OPT_WWH, OPT_WOFF, OPT_WSEG, OPT_FLIP, OPT_JIT, OPT_VAL,
       OPT_VALEVERY, OPT_VALLIM, OPT_LOGEVERY, OPT_CKPT, OPT_CKPTEVERY, OPT_RESUME, OPT_INIT, OPT_SYNCBN, OPT_CLIP,
       OPT_SKIP, OPT_VALFLIP };
static const struct option longopts[] = {
    {"model", required_argument, 0, 'm'},          {"output", required_argument, 0, 'o'},
    {"train", required_argument, 0, OPT_TRAIN},    {"stride", required_argument, 0, OPT_STRIDE},
    {"stage", required_argument, 0, OPT_STAGE},    {"up-channels", required_argument, 0, OPT_UPC},
    {"head-channels", required_argument, 0, OPT_HC}, {"freeze-backbone", no_argument, 0, OPT_FREEZE},
    {"steps", required_argument, 0, OPT_STEPS},    {"batch", required_argument, 0, OPT_BATCH},
    {"lr", required_argument, 0, OPT_LR},          {"schedule", required_argument, 0, OPT_SCHED},
    {"warmup", required_argument, 0, OPT_WARM},    {"momentum", required_argument, 0, OPT_MOM},
    {"wd", required_argument, 0, OPT_WD},          {"hm-weight", required_argument, 0, OPT_WHM},
    {"wh-weight", required_argument, 0, OPT_WWH},  {"off-weight", required_argument, 0, OPT_WOFF},
    {"seg-weight", required_argument, 0, OPT_WSEG}, {"flip", required_argument, 0, OPT_FLIP},
    {"scale-jitter", required_argument, 0, OPT_JIT}, {"val", required_argument, 0, OPT_VAL},
    {"val-every", required_argument, 0, OPT_VALEVERY}, {"val-limit", required_argument, 0, OPT_VALLIM},
    {"log-every", required_argument, 0, OPT_LOGEVERY}, {"checkpoint", required_argument, 0, OPT_CKPT},
    {"checkpoint-every", required_argument, 0, OPT_CKPTEVERY}, {"resume", required_argument, 0, OPT_RESUME},
    {"init", required_argument, 0, OPT_INIT},
    {"sync-bn", no_argument, 0, OPT_SYNCBN},       {"clip-grad", required_argument, 0, OPT_CLIP},
    {"seg-skip", required_argument, 0, OPT_SKIP},  {"val-flip-test", no_argument, 0, OPT_VALFLIP},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

/* A scenes file in memory. */
typedef struct {
    kd_dataset_info info;
    uint8_t *images, *masks;
    kd_boxes b;
    char **names;
    int nnames;
} scenes;

static int load_scenes(const char *path, int64_t limit, int need_masks, scenes *s)
{
    memset(s, 0, sizeof *s);
    kd_dataset_file *f = kd_dataset_open(path, &s->info);
    if (!f)
        return -1;
    int rc = -1;
    if (!s->info.has_boxes) {
        kd_err_set("%s: no boxes (a detection dataset is needed: dataset --scenes)", path);
        goto out;
    }
    if (need_masks && !s->info.has_masks) {
        kd_err_set("%s: no /masks for the segmentation head (or give --seg-weight 0)", path);
        goto out;
    }
    if (limit > 0 && limit < s->info.n)
        s->info.n = limit;
    size_t img = (size_t)s->info.h * s->info.w;
    s->images = malloc(img * s->info.c * (size_t)s->info.n);
    s->masks = s->info.has_masks ? malloc(img * (size_t)s->info.n) : NULL;
    if (!s->images || (s->info.has_masks && !s->masks)) {
        kd_err_set("%s: out of memory", path);
        goto out;
    }
    if (kd_dataset_read_rows(f, 0, s->info.n, s->images, NULL) || kd_dataset_read_boxes(f, &s->b) ||
        (s->masks && kd_dataset_read_masks(f, 0, s->info.n, s->masks)))
        goto out;
    if (s->info.nclasses > 0 && (s->nnames = kd_dataset_classes(f, &s->names)) < 0)
        goto out;
    rc = 0;
out:
    kd_dataset_close(f);
    return rc;
}

static void free_scenes(scenes *s)
{
    free(s->images), free(s->masks);
    kd_boxes_free(&s->b);
    if (s->names)
        kd_strv_free(s->names, s->nnames);
}

/* AP and mIoU of the detector on the validation scenes. */
static int validate(kd_detnet *d, scenes *v, kd_coco *gt, long step, int quiet)
{
    kd_detlist l = {0};
    size_t img = (size_t)v->info.h * v->info.w;
    uint8_t *masks = malloc(img * (size_t)v->info.n);
    kd_coco_box *dt = NULL;
    kd_seg_result sr = {0};
    kd_coco_result r = {0};
    int rc = -1;
    if (!masks || kd_detnet_run(d, v->images, v->info.n, v->info.c, 0, 100, &l, masks, NULL, NULL))
        goto out;
    if (!(dt = calloc((size_t)l.n + 1, sizeof *dt)))
        goto out;
    for (int64_t i = 0; i < l.n; i++) {
        const kd_cn_det *e = &l.det[i];
        dt[i] = (kd_coco_box){.x = e->x, .y = e->y, .w = e->w, .h = e->h, .area = (double)e->w * e->h,
                              .score = e->score, .image = l.ids[i], .cat = e->cls, .id = i + 1};
    }
    gt->dt = dt, gt->ndt = l.n;
    int bad = kd_coco_prepare(gt) || kd_coco_evaluate(gt, &r);
    gt->dt = NULL, gt->ndt = 0;
    if (bad || kd_seg_init(&sr, d->K + 1))
        goto out;
    kd_seg_add(&sr, masks, v->masks, (int64_t)img * v->info.n);
    kd_seg_finish(&sr);
    kd_json j;
    kd_json_begin(&j, stdout);
    kd_json_int(&j, "step", step);
    kd_json_num(&j, "AP", r.stats[0]);
    kd_json_num(&j, "AP50", r.stats[1]);
    kd_json_num(&j, "AP75", r.stats[2]);
    kd_json_num(&j, "mIoU", sr.miou);
    kd_json_end(&j);
    (void)quiet;
    rc = 0;
out:
    if (rc && !kd_err_get()[0])
        kd_err_set("validation: out of memory");
    kd_coco_result_free(&r);
    kd_seg_free(&sr);
    free(masks), free(dt);
    kd_detlist_free(&l);
    return rc;
}

/* Several processes: the gradients (backbone unless frozen, head) and
 * the logged loss become their means over the ranks. */
static int average_grads(kd_detnet *d, kd_slab *P, int freeze, double *loss, double term[4])
{
    size_t ng = 0;
    float *g = freeze ? NULL : kd_model_grads(d->m, &ng);
    double v[5] = {*loss, term[0], term[1], term[2], term[3]};
    if ((g && kd_dist_mean_f32(g, ng)) || kd_dist_mean_f32(P->g, P->n) || kd_dist_mean_f64(v, 5))
        return -1;
    *loss = v[0];
    memcpy(term, v + 1, 4 * sizeof *term);
    return 0;
}

/* Checkpoint: the detector file plus /train (momentum slabs; step and seed
 * as attributes of the momentum dataset). */
static int save_ckpt(const kd_detnet *d, const kd_sgd *sm, const kd_sgd *sh, long step, uint64_t seed,
                     const char *path)
{
    kd_h5 h;
    if (kd_h5_create(&h, path, "model"))
        return -1;
    if (kd_detnet_save_h5(d, &h) ||
        (sm && kd_h5_write(&h, "train/momentum", KD_F32, 1, (int64_t[]){(int64_t)sm->n}, sm->buf)) ||
        kd_h5_write(&h, "train/det_momentum", KD_F32, 1, (int64_t[]){(int64_t)sh->n}, sh->buf) ||
        kd_h5_attr_set_i64(&h, "train/det_momentum", "step", step) ||
        kd_h5_attr_set_i64(&h, "train/det_momentum", "seed", (int64_t)seed)) {
        kd_h5_abort(&h);
        return -1;
    }
    return kd_h5_commit(&h);
}

static int resume_ckpt(const char *path, kd_sgd *sm, kd_sgd *sh, uint64_t seed, long *step)
{
    kd_h5 h;
    if (kd_h5_open(&h, path, "model"))
        return -1;
    int64_t st = 0, sd = 0;
    int rc = -1;
    if (!kd_h5_exists(&h, "train/det_momentum")) {
        kd_err_set("%s: not a detect-train checkpoint (no train/det_momentum)", path);
        goto out;
    }
    if (kd_h5_attr_get_i64(&h, "train/det_momentum", "step", &st) ||
        kd_h5_attr_get_i64(&h, "train/det_momentum", "seed", &sd))
        goto out;
    if ((uint64_t)sd != seed) {
        kd_err_set("%s: made with --seed %llu, not %llu", path, (unsigned long long)sd, (unsigned long long)seed);
        goto out;
    }
    if (kd_h5_expect(&h, "train/det_momentum", 1, (int64_t[]){(int64_t)sh->n}, NULL) ||
        kd_h5_read(&h, "train/det_momentum", KD_F32, 0, (int64_t)sh->n, sh->buf))
        goto out;
    if (sm && (kd_h5_expect(&h, "train/momentum", 1, (int64_t[]){(int64_t)sm->n}, NULL) ||
               kd_h5_read(&h, "train/momentum", KD_F32, 0, (int64_t)sm->n, sm->buf)))
        goto out;
    *step = (long)st;
    rc = 0;
out:
    kd_h5_close(&h);
    return rc;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    kd_cli_version_note(kd_dist_describe());
    const char *model = NULL, *train = NULL, *out = NULL, *sched = "cosine", *val = NULL, *ckpt = NULL,
               *resume = NULL, *init = NULL;
    int stride = 4, stage = 0, upc = 64, hc = 64, freeze = 0, batch = 16, sync_bn = 0, skip = -1, val_flip = 0;
    long steps = 1000, warm = 0, val_every = 0, val_lim = 0, log_every = 50, ckpt_every = 0;
    double lr = 0.02, mom = 0.9, wd = 1e-4, flip = 0.5, jit = 0.2, clip = 0;
    kd_det_weights W = {.hm = 1, .wh = 0.1f, .off = 1, .seg = 5};
    int opt;
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case OPT_TRAIN: train = optarg; break;
        case OPT_STRIDE:
            stride = (int)kd_parse_long("--stride", optarg, 1, 64);
            if (stride != 4 && stride != 8)
                kd_usage("--stride: must be 4 or 8, not %d", stride);
            break;
        case OPT_STAGE: stage = (int)kd_parse_long("--stage", optarg, 1, KD_MAX_STAGES); break;
        case OPT_UPC: upc = (int)kd_parse_long("--up-channels", optarg, 1, 4096); break;
        case OPT_HC: hc = (int)kd_parse_long("--head-channels", optarg, 1, 4096); break;
        case OPT_SKIP: skip = (int)kd_parse_long("--seg-skip", optarg, 0, KD_MAX_STAGES); break;
        case OPT_FREEZE: freeze = 1; break;
        case OPT_STEPS: steps = kd_parse_long("--steps", optarg, 1, 100000000); break;
        case OPT_BATCH: batch = (int)kd_parse_long("--batch", optarg, 1, 4096); break;
        case OPT_LR: lr = kd_parse_double("--lr", optarg, 0, 100); break;
        case OPT_SCHED: sched = optarg; break;
        case OPT_WARM: warm = kd_parse_long("--warmup", optarg, 0, 100000000); break;
        case OPT_MOM: mom = kd_parse_double("--momentum", optarg, 0, 1); break;
        case OPT_WD: wd = kd_parse_double("--wd", optarg, 0, 1); break;
        case OPT_CLIP: clip = kd_parse_double("--clip-grad", optarg, 0, 1e12); break;
        case OPT_WHM: W.hm = (float)kd_parse_double("--hm-weight", optarg, 0, 1e6); break;
        case OPT_WWH: W.wh = (float)kd_parse_double("--wh-weight", optarg, 0, 1e6); break;
        case OPT_WOFF: W.off = (float)kd_parse_double("--off-weight", optarg, 0, 1e6); break;
        case OPT_WSEG: W.seg = (float)kd_parse_double("--seg-weight", optarg, 0, 1e6); break;
        case OPT_FLIP: flip = kd_parse_double("--flip", optarg, 0, 1); break;
        case OPT_JIT: jit = kd_parse_double("--scale-jitter", optarg, 0, 0.9); break;
        case OPT_VAL: val = optarg; break;
        case OPT_VALEVERY: val_every = kd_parse_long("--val-every", optarg, 0, 100000000); break;
        case OPT_VALLIM: val_lim = kd_parse_long("--val-limit", optarg, 1, INT64_MAX / 2); break;
        case OPT_VALFLIP: val_flip = 1; break;
        case OPT_LOGEVERY: log_every = kd_parse_long("--log-every", optarg, 0, 100000000); break;
        case OPT_CKPT: ckpt = optarg; break;
        case OPT_CKPTEVERY: ckpt_every = kd_parse_long("--checkpoint-every", optarg, 0, 100000000); break;
        case OPT_RESUME: resume = optarg; break;
        case OPT_INIT: init = optarg; break;
        case OPT_SYNCBN: sync_bn = 1; break;
        default: kd_cli_std(opt, optarg, &std);
        }
    }
    if (optind < argc)
        kd_usage("unexpected argument '%s'", argv[optind]);
    if (init && (model || resume))
        kd_usage("--init with %s: a run starts from one model", model ? "-m" : "--resume");
    if (!model && !resume && !init)
        kd_usage("a backbone is required (-m BACKBONE.h5)");
    if (!train)
        kd_usage("training scenes are required (--train SCENES.h5)");
    if (!out)
        kd_usage("an output file is required (-o DETECTOR.h5)");
    if (skip > 0 && !(W.seg > 0))
        kd_usage("--seg-skip %d with --seg-weight 0: the skip head would not be trained", skip);
    if (val_flip && !val)
        kd_usage("--val-flip-test without --val: there is nothing to validate");
    kd_sched S;
    if (kd_sched_parse(&S, sched))
        kd_usage("--schedule: %s", kd_err_get());
    if (S.kind == KD_SCHED_STEP)
        for (int i = 0; i < S.nmile; i++) /* milestones as fractions of the run: one "epoch" is the run */
            if (S.milestones[i] > 1)
                kd_usage("--schedule: step milestones are fractions of --steps (in [0, 1])");
    S.base = lr, S.total = steps, S.warmup = warm;
    /* several processes (mpirun): rank R trains on scenes [R*n, (R+1)*n) of
     * every global batch of --batch; the gradients are averaged; rank 0
     * logs, validates and writes */
    if (kd_dist_init(&argc, &argv))
        kd_die_err();
    const int R = kd_dist_size(), rank = kd_dist_rank();
    if (batch % R)
        kd_usage("--batch %d is not a multiple of the %d processes", batch, R);
    const int nb = batch / R;
    static char name[64];
    if (R > 1) {
        snprintf(name, sizeof name, "%s (rank %d of %d)", kd_progname, rank, R);
        kd_progname = name;
    }
    if (rank) {
        std.quiet = 1, val = NULL, ckpt = NULL, log_every = 0;
    } else {
        kd_cli_output(out);
        if (ckpt)
            kd_cli_output(ckpt);
    }
    if (kd_gemm_init(std.threads))
        kd_die_err();

    scenes tr, va;
    if (load_scenes(train, 0, W.seg > 0, &tr))
        kd_die_err();
    int K = tr.info.nclasses;
    if (K <= 0)
        for (int64_t i = 0; i < tr.b.m; i++)
            K = tr.b.labels[i] + 1 > K ? tr.b.labels[i] + 1 : K;
    if (K < 1 || K > 254)
        kd_die(KD_EXIT_FAIL, "%s: %d classes (the masks hold 1..254)", train, K);
    kd_coco gt = {0};
    if (val) {
        if (load_scenes(val, val_lim, 1, &va))
            kd_die_err();
        if (va.info.h != tr.info.h || va.info.w != tr.info.w || va.info.c != tr.info.c)
            kd_die(KD_EXIT_FAIL, "%s: %dx%dx%d scenes, %s has %dx%dx%d", val, va.info.h, va.info.w, va.info.c,
                   train, tr.info.h, tr.info.w, tr.info.c);
        if (kd_coco_load_gt_h5(&gt, val) || kd_coco_prepare(&gt))
            kd_die_err();
        /* --val-limit: only the images scored */
        int keep = 0;
        for (int i = 0; i < gt.nimages; i++)
            if (gt.images[i] < va.info.n)
                gt.images[keep++] = gt.images[i];
        gt.nimages = keep;
        int64_t kg = 0;
        for (int64_t i = 0; i < gt.ngt; i++)
            if (gt.gt[i].image < va.info.n)
                gt.gt[kg++] = gt.gt[i];
        gt.ngt = kg;
    }

    kd_detnet d = {0};
    if (resume || init) { /* the head's shape is the file's; what the scenes need must match it */
        const char *from = resume ? resume : init;
        if (kd_detnet_load(&d, from))
            kd_die_err();
        if (d.K != K || d.stride != stride)
            kd_die(KD_EXIT_FAIL, "%s: a detector of %d classes at stride %d, the options ask %d at %d", from, d.K,
                   d.stride, K, stride);
        if (skip >= 0 && skip != d.skip)
            kd_die(KD_EXIT_FAIL, "%s: a detector with --seg-skip %d, the options ask %d", from, d.skip, skip);
    } else {
        if (!(d.m = kd_model_load(model)))
            kd_die_err();
        d.c = kd_model_opts(d.m)->in_channels, d.stride = stride, d.up = upc, d.hc = hc, d.K = K;
        d.skip = skip > 0 ? skip : 0;
        if (kd_detnet_pick_stage(d.m, tr.info.h, tr.info.w, stride, stage, &d.stage, &d.nup))
            kd_die(KD_EXIT_FAIL, "%s: %s", model, kd_err_get());
        if (d.skip && kd_detnet_check_skip(d.m, 0, 0, d.stage, d.nup, d.skip))
            kd_die(KD_EXIT_FAIL, "%s: --seg-skip: %s", model, kd_err_get());
        if (!d.nup)
            d.up = 0;
        float mean[3], sd[3];
        kd_norm_overrides ov = {0};
        if (kd_dataset_norm(&tr.info, d.c, &ov, mean, sd))
            kd_die_err();
        memcpy(d.mean, mean, sizeof mean), memcpy(d.std, sd, sizeof sd);
        if (tr.names)
            d.names = tr.names, d.nnames = tr.nnames, tr.names = NULL;
    }
    if (tr.info.c != 1 && tr.info.c != d.c)
        kd_die(KD_EXIT_FAIL, "%s: %d-channel images for a %d-channel backbone", train, tr.info.c, d.c);
    kd_model_set_regularisers(d.m, 0, 0);
    d.flip_test = val && val_flip;
    if (kd_detnet_prepare(&d, nb, tr.info.h, tr.info.w, 1, freeze, std.seed))
        kd_die_err();
    if (R > 1 && sync_bn && (kd_model_set_bn_sync(d.m, kd_dist_sum_f64) || kd_dethead_set_bn_sync(d.head, kd_dist_sum_f64)))
        kd_die_err();
    kd_det_loss *L = kd_det_loss_new(&d);
    kd_sgd_opts so = {.momentum = (float)mom, .wd = (float)wd, .wd_exclude = 1};
    kd_sgd sm, sh;
    kd_slab *P = kd_dethead_params(d.head);
    if (!L || (!freeze && kd_sgd_init(&sm, d.m, &so)) || kd_sgd_init_views(&sh, P->n, P->v, P->nv, &so))
        kd_die_err();
    long step = 0;
    if (resume && resume_ckpt(resume, freeze ? NULL : &sm, &sh, std.seed, &step))
        kd_die_err();

    int H = tr.info.h, Wd = tr.info.w, C = tr.info.c;
    size_t img = (size_t)H * Wd;
    uint8_t *bimg = malloc(img * C * batch), *bmask = malloc(img * batch);
    float *bbox = malloc(sizeof(float) * 4 * KD_DET_MAX_OBJ * batch);
    int32_t *blab = malloc(sizeof(int32_t) * KD_DET_MAX_OBJ * batch);
    int *boff = malloc(sizeof(int) * (batch + 1));
    int64_t *perm = malloc(sizeof(int64_t) * tr.info.n);
    uint8_t *zmask = calloc(img, 1);
    if (!bimg || !bmask || !bbox || !blab || !boff || !perm || !zmask)
        kd_die(KD_EXIT_FAIL, "out of memory");
    int64_t perm_epoch = -1, N = tr.info.n;
    double t0 = kd_now();
    for (; step < steps; step++) {
        boff[0] = 0;
        for (int b = 0; b < nb; b++) {
            int64_t k = (int64_t)step * batch + (int64_t)rank * nb + b, ep = k / N;
            if (ep != perm_epoch) { /* each epoch its own order, keyed by (seed, epoch) */
                kd_rng pr = kd_rng_make(std.seed, 0xE90Cu, (uint64_t)ep);
                kd_rng_permute(&pr, perm, N);
                perm_epoch = ep;
            }
            int64_t r = perm[k % N];
            kd_rng ar = kd_rng_make(std.seed, 0xA06u, (uint64_t)k);
            int fl = kd_rng_uniform(&ar) < flip;
            float s = kd_rng_range(&ar, (float)(1 - jit), (float)(1 + jit));
            int64_t b0 = tr.b.offsets[r], nb = tr.b.offsets[r + 1] - b0;
            if (nb > KD_DET_MAX_OBJ)
                nb = KD_DET_MAX_OBJ;
            int m = kd_scene_aug(tr.images + (size_t)r * img * C, tr.masks ? tr.masks + (size_t)r * img : zmask, H,
                                 Wd, C, tr.b.boxes + 4 * b0, tr.b.labels + b0, (int)nb, fl, s,
                                 bimg + (size_t)b * img * C, bmask + (size_t)b * img, bbox + 4 * (size_t)boff[b],
                                 blab + boff[b]);
            boff[b + 1] = boff[b] + m;
        }
        kd_model_set_rng(d.m, std.seed, (uint64_t)step);
        kd_detnet_input(&d, bimg, nb, C);
        if (!freeze)
            kd_model_zero_grad(d.m);
        memset(P->g, 0, sizeof(float) * P->n);
        if (kd_detnet_forward(&d, nb, 1))
            kd_die_err();
        double term[4];
        double loss = kd_det_loss_compute(L, &d, nb, bbox, blab, boff, tr.masks ? bmask : NULL, &W, term);
        if (!isfinite(loss)) {
            free(bimg), free(bmask), free(bbox), free(blab), free(boff), free(perm), free(zmask);
            kd_die(KD_EXIT_FAIL, "step %ld: loss is not finite (hm %g, wh %g, off %g, seg %g); nothing written",
                   step, term[0], term[1], term[2], term[3]);
        }
        if (kd_detnet_backward(&d))
            kd_die_err();
        if (R > 1 && average_grads(&d, P, freeze, &loss, term))
            kd_die_err();
        double gnorm = 0;
        if (clip > 0) {
            /* after the ranks' mean, so every rank scales by the same factor */
            size_t n[2] = {P->n, 0};
            float *g[2] = {P->g, freeze ? NULL : kd_model_grads(d.m, &n[1])};
            gnorm = kd_grad_clip(g, n, freeze ? 1 : 2, clip);
            if (!isfinite(gnorm)) {
                free(bimg), free(bmask), free(bbox), free(blab), free(boff), free(perm), free(zmask);
                kd_die(KD_EXIT_FAIL, "step %ld: gradient norm is not finite (loss %g); nothing written", step, loss);
            }
        }
        double lrs = kd_sched_lr(&S, step, (double)step / steps);
        if (!freeze) {
            size_t np;
            float *p = kd_model_params(d.m, &np);
            kd_sgd_step(&sm, p, kd_model_grads(d.m, &np), (float)lrs);
        }
        kd_sgd_step(&sh, P->p, P->g, (float)lrs);
        long done = step + 1;
        if (log_every && (done % log_every == 0 || done == steps)) {
            kd_json j;
            kd_json_begin(&j, stdout);
            kd_json_int(&j, "step", done);
            kd_json_num(&j, "loss", loss);
            kd_json_num(&j, "hm", term[0]);
            kd_json_num(&j, "wh", term[1]);
            kd_json_num(&j, "off", term[2]);
            kd_json_num(&j, "seg", term[3]);
            kd_json_num(&j, "lr", lrs);
            if (clip > 0)
                kd_json_num(&j, "gnorm", gnorm);
            kd_json_num(&j, "seconds", kd_now() - t0);
            kd_json_end(&j);
        }
        kd_progress_run(&std, done, steps, done / (kd_now() - t0 + 1e-9), "steps", "training");
        if (val && ((val_every && done % val_every == 0) || done == steps) && validate(&d, &va, &gt, done, std.quiet))
            kd_die_err();
        if (ckpt && ((ckpt_every && done % ckpt_every == 0) || done == steps) &&
            save_ckpt(&d, freeze ? NULL : &sm, &sh, done, std.seed, ckpt))
            kd_die_err();
    }
    kd_progress_end(&std);
    kd_h5 h;
    if (!rank) {
        if (kd_h5_create(&h, out, "model"))
            kd_die_err();
        if (kd_detnet_save_h5(&d, &h)) {
            kd_h5_abort(&h);
            kd_die_err();
        }
        if (kd_h5_commit(&h))
            kd_die_err();
    }
    if (kd_dist_finalize())
        kd_die_err();
    free(bimg), free(bmask), free(bbox), free(blab), free(boff), free(perm), free(zmask);
    kd_det_loss_free(L);
    if (!freeze)
        kd_sgd_free(&sm);
    kd_sgd_free(&sh);
    kd_detnet_free(&d);
    free_scenes(&tr);
    if (val) {
        free_scenes(&va);
        kd_coco_free(&gt);
    }
    return 0;
}
