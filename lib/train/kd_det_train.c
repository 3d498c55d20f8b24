/* kd_det_train — the detection head's targets and losses over a batch
 * (kd_detnet.h): CenterNet's focal loss on the heatmap, L1 on size and
 * offset at the objects' peaks, cross-entropy of the masks' logits (the
 * segmentation head's, with the skip head's when there is one) bilinearly
 * upsampled to the image against its full mask. */
#include <stdlib.h>
#include <string.h>

#include "kd_detnet.h"
#include "kd_err.h"

struct kd_det_loss {
    int maxn, K, H, W;
    float *heat;      /* [maxn,K,H,W] */
    kd_cn_obj *obj;   /* [maxn*KD_DET_MAX_OBJ] */
    int *ooff;        /* [maxn+1] */
    int Hi, Wi;       /* the images' size */
    float *up, *dup;  /* [maxn,K+1,Hi,Wi] upsampled segmentation logits, their gradient */
};

kd_det_loss *kd_det_loss_new(const kd_detnet *d)
{
    kd_det_loss *L = calloc(1, sizeof *L);
    if (!L) {
        kd_err_set("detector: out of memory");
        return NULL;
    }
    L->maxn = d->maxn, L->K = d->K;
    kd_dethead_out_size(d->head, &L->H, &L->W);
    size_t HW = (size_t)L->H * L->W;
    L->heat = malloc(sizeof(float) * (size_t)d->maxn * d->K * HW);
    L->obj = malloc(sizeof(kd_cn_obj) * (size_t)d->maxn * KD_DET_MAX_OBJ);
    L->ooff = malloc(sizeof(int) * (size_t)(d->maxn + 1));
    L->Hi = d->H, L->Wi = d->W;
    size_t nup = (size_t)d->maxn * (d->K + 1) * d->H * d->W;
    L->up = malloc(sizeof(float) * nup);
    L->dup = malloc(sizeof(float) * nup);
    if (!L->heat || !L->obj || !L->ooff || !L->up || !L->dup) {
        kd_det_loss_free(L);
        kd_err_set("detector: out of memory");
        return NULL;
    }
    return L;
}

void kd_det_loss_free(kd_det_loss *L)
{
    if (L)
        free(L->heat), free(L->obj), free(L->ooff), free(L->up), free(L->dup);
    free(L);
}

double kd_det_loss_compute(kd_det_loss *L, kd_detnet *d, int n, const float *boxes, const int32_t *labels,
                           const int *off, const uint8_t *masks, const kd_det_weights *w, double term[4])
{
    int K = L->K, H = L->H, W = L->W, S = d->stride;
    size_t HW = (size_t)H * W;
    L->ooff[0] = 0;
    for (int i = 0; i < n; i++) {
        int m = kd_cn_targets(boxes + 4 * (size_t)off[i], labels + off[i], off[i + 1] - off[i], K, H, W, S,
                              L->heat + (size_t)i * K * HW, L->obj + L->ooff[i], KD_DET_MAX_OBJ);
        L->ooff[i + 1] = L->ooff[i] + m;
    }
    kd_dethead *h = d->head;
    term[0] = kd_cn_focal(kd_dethead_out(h, KD_DH_HM), L->heat, (size_t)n * K * HW, w->hm,
                          kd_dethead_dout(h, KD_DH_HM));
    term[1] = kd_cn_reg_l1(kd_dethead_out(h, KD_DH_WH), n, H, W, L->obj, L->ooff, 0, w->wh,
                           kd_dethead_dout(h, KD_DH_WH));
    term[2] = kd_cn_reg_l1(kd_dethead_out(h, KD_DH_REG), n, H, W, L->obj, L->ooff, 1, w->off,
                           kd_dethead_dout(h, KD_DH_REG));
    term[3] = 0;
    if (masks && w->seg > 0) {
        /* the loss on the masks as detect makes them: the stride-S logits
         * bilinearly upsampled to the image, scored at every pixel (cell
         * centres alone bound the masks' mIoU below 0.75 on 48x48 scenes) */
        int Hs, Ws;
        const float *seg = kd_dethead_seg(h, &Hs, &Ws);
        term[3] = kd_seg_ce_up(seg, n, K + 1, Hs, Ws, masks, L->Hi, L->Wi, w->seg, kd_dethead_dseg(h), L->up, L->dup);
    }
    return w->hm * term[0] + w->wh * term[1] + w->off * term[2] + w->seg * term[3];
}
