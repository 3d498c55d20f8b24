/* kd_model_build — the inside of a kd_model, shared by the engine
 * (lib/nn/kd_model*.c: registry, building, planning, forward/backward,
 * files) and lib/nn/kd_arch_*.c (the architecture builders).  Not a public
 * header.
 *
 * A model is a list of nodes over values.  A value is one activation tensor
 * [N,C,H,W] (value 0 is the input); a node reads one or two values and
 * writes one.  Residual wiring is just a node reading two values.  Builders
 * call kd_b_*() in forward order; shapes other than channels are only known
 * when kd_model_prepare() plans for an input size. */
#ifndef KD_MODEL_BUILD_H
#define KD_MODEL_BUILD_H

#include "kd_layers.h"
#include "kd_model.h"

typedef enum { N_CONV, N_BN, N_ACT, N_MAXPOOL, N_GAP, N_LINEAR, N_ADD, N_SCALE, N_DROPOUT, N_DROPPATH } kd_op;

/* How a parameter view is initialised (the PyTorch initialiser it mirrors). */
typedef enum { I_ZERO, I_ONE, I_NORMAL, I_UNIFORM } kd_init_kind;
typedef struct {
    kd_init_kind kind;
    float a; /* std for I_NORMAL, bound for I_UNIFORM */
} kd_init;

typedef struct {
    kd_op op;
    int in, in2, out;          /* value ids; in2: ADD's second term, SCALE's scales */
    int O, k, stride, pad, groups;
    kd_act act;
    float eps, momentum, p;
    int w, b;                  /* parameter views, -1: none */
    int rm, rv, nbt;           /* buffer views (BN), -1: none */
    /* planned */
    kd_conv conv;
    kd_pool pool;
    size_t aux, iaux;          /* saved state for backward: BN mean/rstd, masks, argmax */
    int inplace;               /* output shares the input's storage */
    int fold_bn;               /* eval-only: conv whose BN (this node) is folded in, -1 */
    int folded;                /* eval-only: BN folded into the conv before it */
    /* fusion (kd_model_plan.c): a BN that also runs the residual add and
     * the ReLU after it, in its own per-channel pass */
    int fuse_add, fuse_act;    /* BN: absorbed ADD / ACT node, -1: none */
    int fuse_res, fuse_out;    /* BN: the add's other term (-1: none), the fused output value */
    int absorbed;              /* ADD/ACT run by the fused BN before it */
} kd_node;

typedef struct {
    int C, H, W;     /* per image */
    int producer;    /* node, -1 for the input */
    int nuse, last_use;
    int stage;       /* a stage map: never overwritten in place */
    int alias;       /* storage shared with this value (in-place), -1 */
    size_t off, doff;
    int has_grad;    /* a gradient buffer exists */
    int nobuf;       /* inside a fused BN: never materialised, no storage or gradient */
    int grad_live;   /* backward: gradient holds something non-zero */
} kd_value;

struct kd_model {
    kd_arch_opts o;
    char arch[32];
    uint64_t seed;
    int build_err; /* a builder failed (kd_err holds the first failure) */

    kd_node *nodes;
    int nn, capn;
    kd_value *vals;
    int nv, capv;

    kd_pview *pv;
    kd_init *pinit;
    int npv, cappv;
    kd_pview *bv;
    int nbv, capbv;
    size_t nparams, nbuffers;
    float *params, *grads, *buffers;

    int stages[KD_MAX_STAGES];
    int nstages;
    int keep_stage[KD_MAX_STAGES + 1];
    int grad_stage[KD_MAX_STAGES + 1]; /* receives a gradient in backward (the last always may) */
    int feat, logits, emb; /* value ids, -1: none */

    /* plan */
    int eval_only;
    int no_fuse; /* plan the unfused twin (kd_model_set_fusion, KDPIPE_NO_FUSE) */
    int max_n, H, W, planned_n;
    float *act, *dact, *aux, *ws, *fold;
    int32_t *iaux;
    char *nz; /* backward: which values carry a non-zero gradient */
    size_t act_cap, dact_cap, aux_cap, iaux_cap, ws_cap, fold_cap, nz_cap;
    size_t act_need, dact_need, aux_need, iaux_need, ws_need;

    int last_n, last_train, last_group, last_sync;
    kd_bn_sum_fn bn_sum; /* sync-BN across replicas (kd_model_set_bn_sync), or NULL */
    double *bn_work;     /* its 2*C+1 doubles for the widest BN */
    uint64_t rng_seed, step;
    int use_dropout, use_droppath;
};

/* Builders: return the new value id (or -1 after a failure: out of memory,
 * bad channels, a failed input; the first one is recorded with kd_err_set
 * and remembered in build_err, after which every builder does nothing).  Names are PyTorch module paths; the parameter
 * names get ".weight"/".bias" appended. */
/* Convolutions get padding (k-1)/2 and kaiming normal fan_out init (gain
 * sqrt(2), bias 0): what torchvision and the CRD models all do. */
int kd_b_conv(kd_model *m, const char *name, int in, int O, int k, int stride, int groups, int bias);
int kd_b_bn(kd_model *m, const char *name, int in, float eps, float momentum);
int kd_b_act(kd_model *m, int in, kd_act a);
int kd_b_maxpool(kd_model *m, int in, int k, int stride, int pad);
int kd_b_gap(kd_model *m, int in);
/* init: weight and bias initialisers. */
int kd_b_linear(kd_model *m, const char *name, int in, int O, int bias, kd_init wi, kd_init bi);
/* A 1x1 convolution on a pooled [N,C,1,1] value (squeeze-excite's fc1/fc2):
 * a linear layer with a conv-shaped weight [O,C,1,1], bias, conv init. */
int kd_b_pointwise(kd_model *m, const char *name, int in, int O);
int kd_b_add(kd_model *m, int a, int b);
int kd_b_scale(kd_model *m, int x, int s);
int kd_b_dropout(kd_model *m, int in, float p);
int kd_b_droppath(kd_model *m, int in, float p);
void kd_b_stage(kd_model *m, int v);
int kd_b_channels(const kd_model *m, int v);

/* PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)) for weight and bias. */
kd_init kd_init_linear_default(int fan_in);

/* Architecture builders (lib/kd_arch_*.c): add nodes from value 0 (the
 * input) to the pooled features; set m->feat; return 0 or -1 (kd_err). */
int kd_arch_resnet_tv(kd_model *m);    /* resnet18/34/50 */
int kd_arch_resnet_cifar(kd_model *m); /* resnet20/56/8x4/32x4 */
int kd_arch_wrn(kd_model *m);          /* wrn_16_2, wrn_40_2 */
int kd_arch_mobilenet_v2(kd_model *m);
int kd_arch_efficientnet_b0(kd_model *m);
int kd_arch_mobilenet_v3_large(kd_model *m);

/* torchvision's _make_divisible(v, 8). */
int kd_make_divisible(double v, int divisor);

/* ---- between the engine's files (kd_model*.c) ---- */

/* kd_model_build.c.  The input value (value 0) with C channels. */
int kd_b_input(kd_model *m, int C);
/* The projection head on m->feat (m->o.head_*); sets m->emb. */
int kd_build_head(kd_model *m);
/* PyTorch-like initialisation of every parameter from seed; buffers reset. */
void kd_init_params(kd_model *m, uint64_t seed);

/* kd_model.c.  Graph and slabs for the options (parameters not
 * initialised); NULL with kd_err. */
kd_model *kd_model_build_graph(const kd_arch_opts *o);

/* kd_model_plan.c.  Shapes of every value for n images of h x w, written
 * into vals (m's value table or a copy of it; only H and W change); nodes,
 * when not NULL, receives the conv/pool descriptors (m->nodes when
 * planning).  The model itself is not written.  0 or -1 with kd_err. */
int kd_model_plan_shapes(const kd_model *m, int n, int h, int w, kd_value *vals, kd_node *nodes);

/* Floats of value v for n images (as planned). */
static inline size_t kd_val_size(const kd_model *m, int v, int n)
{
    const kd_value *x = &m->vals[v];
    return (size_t)n * x->C * x->H * x->W;
}

#endif
