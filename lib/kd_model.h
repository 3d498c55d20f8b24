/* kd_model — a network: architecture, parameter/gradient/buffer slabs with
 * PyTorch-named views, forward and backward over a batch.  Model files are
 * in kd_model_io.h (the only part that needs HDF5).
 *
 * CONTRACT between the engine (layers, architectures) and its users
 * (model-init, teacher-extract, distill-step).  Change it only together.
 *
 * A model is a backbone (ending in global average pooling: "features" [N,D]),
 * optionally a linear classifier ("logits" [N,K], torchvision's `fc`/
 * `classifier` names) and optionally a projection head ("embedding" [N,E],
 * MLP d -> h -> e with optional BN, named head.0/head.1/... as MoCo's `fc`
 * Sequential would be; the embedding is NOT normalised).
 *
 * Memory: kd_model_prepare() sizes every activation and the one shared
 * workspace for a maximum batch and input size; forward/backward never
 * allocate. */
#ifndef KD_MODEL_H
#define KD_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *arch;  /* resnet18 resnet34 resnet50 resnet20 resnet56 resnet8x4
                          resnet32x4 wrn_16_2 wrn_40_2 mobilenet_v2
                          efficientnet_b0 mobilenet_v3_large */
    int in_channels;   /* 1 or 3 */
    int num_classes;   /* 0: no classifier */
    int cifar_stem;    /* resnet18/34/50: 3x3 stride-1 stem, no max-pool */
    int head_hidden;   /* 0: no projection head */
    int head_out;
    int head_bn;       /* BN after the head's hidden linear */
    float width_mult;  /* 0 or 1: standard widths (mobilenets/efficientnet) */
} kd_arch_opts;

/* One named tensor in a slab, PyTorch name and shape. */
typedef struct {
    char name[96];
    int rank;
    int64_t shape[4];
    size_t off;  /* in floats, into the slab */
    size_t n;
    int no_decay; /* BN weights/biases and biases: for --wd-exclude-bn-bias */
} kd_pview;

typedef struct kd_model kd_model;

/* Most backbone stages a model has (kd_model_nstages() <= KD_MAX_STAGES). */
#define KD_MAX_STAGES 8

/* Build and initialise as PyTorch/torchvision initialise the same model,
 * deterministically from seed.  NULL with kd_err on an unknown arch or bad
 * options. */
kd_model *kd_model_new(const kd_arch_opts *o, uint64_t seed);
void kd_model_free(kd_model *m);
const kd_arch_opts *kd_model_opts(const kd_model *m);

/* Model files: kd_model_io.h. */

/* Slabs.  Parameters (trainable) and their gradients share one layout;
 * buffers (BN running mean/var as float; num_batches_tracked kept as float
 * here, written as i64) have their own. */
float *kd_model_params(kd_model *m, size_t *n);
float *kd_model_grads(kd_model *m, size_t *n);
float *kd_model_buffers(kd_model *m, size_t *n);
int kd_model_nparam_views(const kd_model *m);
const kd_pview *kd_model_param_view(const kd_model *m, int i);
int kd_model_nbuffer_views(const kd_model *m);
const kd_pview *kd_model_buffer_view(const kd_model *m, int i);
void kd_model_zero_grad(kd_model *m);

/* Allocate activations and workspace for up to max_n images of c x h x w
 * (c must equal in_channels).  Call again to grow. */
int kd_model_prepare(kd_model *m, int max_n, int h, int w);

/* train: BN uses batch statistics and updates running averages (PyTorch's
 * momentum 0.1, unbiased running var), dropout active.
 * bn_group > 0 (train only): BN statistics per consecutive group of that
 * many images (shuffle-BN emulation); 0 = whole batch. */
int kd_model_forward(kd_model *m, const float *x, int n, int train, int bn_group);

int kd_model_feat_dim(const kd_model *m);   /* D */
int kd_model_num_classes(const kd_model *m); /* K or 0 */
int kd_model_emb_dim(const kd_model *m);    /* E or 0 */
const float *kd_model_features(const kd_model *m); /* [n,D] after the last forward */
const float *kd_model_logits(const kd_model *m);   /* [n,K] or NULL */
const float *kd_model_embedding(const kd_model *m);/* [n,E] or NULL */

/* Number of backbone stages and the output map of one stage (1-based;
 * stage kd_model_nstages() is the last, before pooling). */
int kd_model_nstages(const kd_model *m);
const float *kd_model_stage_map(const kd_model *m, int stage, int *c, int *h, int *w);

/* Before kd_model_prepare: stage s (1..nstages) will receive a gradient
 * in backward (its map is then also kept intact through the forward).  The
 * last stage always may; declaring another one makes the gradient arena
 * hold that stage's gradient from the start of backward. */
int kd_model_grad_stage(kd_model *m, int stage);

/* Gradients of the outputs of the last forward, each NULL for none. */
typedef struct {
    const float *features, *logits, *embedding; /* [n,D] [n,K] [n,E] or NULL */
    const float *map[KD_MAX_STAGES + 1];        /* map[s]: [n,C_s,H_s,W_s] gradient at stage s, or NULL */
} kd_model_dout;

/* Backward of the last forward (which must have been train mode).
 * Accumulates into the grads slab.  A map gradient for a stage other than
 * the last needs kd_model_grad_stage() before prepare; map[0] must be NULL. */
int kd_model_backward_dout(kd_model *m, const kd_model_dout *g);

/* The same with positional gradients, any of them NULL; d_map is the last
 * stage's map gradient (for the spatial distillation losses). */
int kd_model_backward(kd_model *m, const float *d_features, const float *d_logits,
                      const float *d_embedding, const float *d_map);

/* Class-activation maps of the last forward: the classifier applied at
 * every position of the last stage map, cam [n,K,h,w] for the n images of
 * that forward (its average over h x w is the logits, up to rounding).
 * -1 with kd_err when the model has no classifier or its classifier is not
 * one linear map of the pooled last stage (mobilenet_v3_large's is two), or
 * (kd_model_cam) when no forward ran.  _shape works before any forward, with
 * h, w those of the planned input size. */
int kd_model_cam_shape(const kd_model *m, int *K, int *h, int *w);
int kd_model_cam(const kd_model *m, float *cam);

/* The linear classifier, logits = W features + b, as pointers into the
 * parameter and gradient slabs: W [K,D], b [K] (NULL when it has none).
 * For losses that apply the classifier elsewhere than on the pooled
 * features (class-activation maps, region logits) and train it there.  A
 * dropout between the features and the classifier is looked through (the
 * classifier is still linear in the features).  -1 with kd_err when the
 * model has no classifier or it is not one linear layer on the pooled
 * features (mobilenet_v3_large's two-layer classifier): the same check as
 * kd_model_cam's. */
int kd_model_classifier(kd_model *m, float **W, float **b, float **dW, float **db);

/* Multiply-accumulates of one forward of one image at h x w (for GFLOP/s). */
double kd_model_flops(const kd_model *m, int h, int w);

/* ---- additions (model engine) ---- */

/* Space-separated list of the architecture names. */
const char *kd_model_arch_names(void);
/* Before kd_model_prepare: plan for inference only (activations reused as
 * soon as they are dead; training forward refused).  Stage maps other than
 * the last are then only available when kept. */
void kd_model_set_eval_only(kd_model *m, int on);
/* Before kd_model_prepare: fuse each batch norm with the ReLU (and residual
 * add) after it (on, the default) or run them as separate layers (off: the
 * reference the fused plan is tested against; also KDPIPE_NO_FUSE=1 in the
 * environment at prepare time).  The results are the same bits. */
void kd_model_set_fusion(kd_model *m, int on);
int kd_model_keep_stage(kd_model *m, int stage);
/* Randomness of training forwards (dropout, stochastic depth): draws are
 * keyed by (seed, step, layer); step advances with every training forward. */
void kd_model_set_rng(kd_model *m, uint64_t seed, uint64_t step);
/* Switch dropout / stochastic depth off in training (both on by default, as
 * in PyTorch). */
void kd_model_set_regularisers(kd_model *m, int dropout, int drop_path);
/* Synchronised batch norm (kd_bn_forward_train_sync): training forwards with
 * whole-batch statistics (BN group 0) take them over every replica, whose
 * partial sums sum() adds up; NULL: this process's batch alone (the
 * default).  Backward follows the forward it differentiates.  -1: out of
 * memory. */
int kd_model_set_bn_sync(kd_model *m, int (*sum)(double *v, size_t n));
int (*kd_model_bn_sync(const kd_model *m))(double *v, size_t n);
/* Bytes held by the model: parameters, gradients, buffers, activations and
 * workspace as prepared. */
size_t kd_model_memory(const kd_model *m);
/* The planned input size; returns the prepared batch size (0: none). */
int kd_model_input_size(const kd_model *m, int *h, int *w);

#endif
