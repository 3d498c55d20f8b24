/* kd_model_cam — class-activation maps: the linear classifier applied at
 * every position of the last stage map (METHODS.md "MSD": average pooling
 * and a linear map commute, so pooling the CAM over a window gives the
 * logits of that window's pooled feature); and the classifier's weights
 * for a loss that applies it the same way (kd_model_classifier). */
#include "kd_gemm.h"
#include "kd_model_build.h"

#include "kd_err.h"

#define NO_CAM ": no class-activation map"

/* The classifier node when it is one linear map of the pooled last stage
 * (through an eval-mode dropout), else NULL with kd_err ending in what the
 * caller then cannot give (what: "" or ": no class-activation map"). */
static const kd_node *linear_classifier(const kd_model *m, const char *what)
{
    if (m->logits < 0) {
        kd_err_set("model: %s has no classifier%s", m->arch, what);
        return NULL;
    }
    const kd_node *fc = &m->nodes[m->vals[m->logits].producer];
    int in = fc->in;
    if (fc->op == N_LINEAR && m->vals[in].producer >= 0 && m->nodes[m->vals[in].producer].op == N_DROPOUT)
        in = m->nodes[m->vals[in].producer].in;
    const kd_node *gap = m->vals[m->feat].producer >= 0 ? &m->nodes[m->vals[m->feat].producer] : NULL;
    if (fc->op != N_LINEAR || in != m->feat || !gap || gap->op != N_GAP || m->nstages < 1 ||
        gap->in != m->stages[m->nstages - 1]) {
        kd_err_set("model: %s's classifier is not one linear map of the pooled last stage%s", m->arch, what);
        return NULL;
    }
    return fc;
}

int kd_model_cam_shape(const kd_model *m, int *K, int *h, int *w)
{
    if (!linear_classifier(m, NO_CAM))
        return -1;
    const kd_value *v = &m->vals[m->stages[m->nstages - 1]];
    *K = m->vals[m->logits].C, *h = v->H, *w = v->W;
    return 0;
}

int kd_model_cam(const kd_model *m, float *cam)
{
    const kd_node *fc = linear_classifier(m, NO_CAM);
    if (!fc)
        return -1;
    if (!m->planned_n || m->last_n < 1) {
        kd_err_set("model: no forward ran: no class-activation map");
        return -1;
    }
    const kd_value *v = &m->vals[m->stages[m->nstages - 1]];
    int D = v->C, K = fc->O, hw = v->H * v->W;
    const float *W = m->params + m->pv[fc->w].off, *b = fc->b >= 0 ? m->params + m->pv[fc->b].off : NULL;
    const float *F = m->act + v->off;
    for (int i = 0; i < m->last_n; i++) {
        float *c = cam + (size_t)i * K * hw;
        /* cam_i [K,hw] = W [K,D] . F_i [D,hw] + b */
        kd_gemm(0, 0, K, hw, D, 1.0f, W, D, F + (size_t)i * D * hw, hw, 0.0f, c, hw);
        if (b)
            for (int k = 0; k < K; k++)
                for (int p = 0; p < hw; p++)
                    c[(size_t)k * hw + p] += b[k];
    }
    return 0;
}

int kd_model_classifier(kd_model *m, float **W, float **b, float **dW, float **db)
{
    const kd_node *fc = linear_classifier(m, "");
    if (!fc)
        return -1;
    *W = m->params + m->pv[fc->w].off, *dW = m->grads + m->pv[fc->w].off;
    *b = fc->b >= 0 ? m->params + m->pv[fc->b].off : NULL;
    *db = fc->b >= 0 ? m->grads + m->pv[fc->b].off : NULL;
    return 0;
}
