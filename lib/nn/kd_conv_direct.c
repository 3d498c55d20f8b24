/* Direct 3x3 stride-1 pad-1 convolution for narrow layers (contract in
 * kd_layers.h; kd_conv.c decides when: kd_conv_direct_applies).
 *
 * Why: resnet20's 16- to 64-channel layers give im2col + GEMM a 16- to
 * 64-row product whose columns cost as much to build as to multiply, and
 * BLIS's 32x12 tiles waste lanes on 16 rows.  Here every image plane is
 * copied once into a zero-padded layout in which the convolution is nine
 * shifted copies of the same flat vector, so the inner loop is
 * broadcast(weight) x vector(input) FMAs with no columns at all.
 *
 * The padded plane: rows of Wp = W + 1 floats (one zero column serves as
 * the right pad of a row and the left pad of the next), H + 2 rows (zero
 * rows above and below), then zeros to PS.  Output (i, j) is q = i*Wp + j of
 * a flat output of L = H*Wp values (q with j == W is junk, discarded), and
 * its tap (u, v) is padded input q + u*Wp + v.  The same layout of dy serves
 * the input gradient (dy convolved with the flipped, transposed kernel) and,
 * read from offset Wp + 1, the weight gradient, where its zero columns make
 * the junk outputs contribute nothing.
 *
 * Register blocks: OB output channels x QB vectors of outputs in the
 * forward (and input-gradient) kernel, OBW output channels x the three taps
 * of one kernel row in the weight-gradient kernel.  Vectors are GCC vector
 * types of the widest the compiler targets (16 floats with AVX-512, 8
 * otherwise); the file is built with -ffp-contract=fast (Makefile), so the
 * multiply-adds are FMAs.
 *
 * Determinism: images are independent in the forward and input gradient;
 * the weight gradient is summed per image in a fixed order, over
 * KD_CONV_PARTS fixed image ranges, then over the ranges in order, so the
 * bits do not depend on the thread count (they do depend on the vector
 * width, i.e. on the CPU, like BLIS's). */
#include <omp.h>
#include <string.h>

#include "kd_layers_impl.h"

#if defined(__AVX512F__)
#define VL 16
#define QB_MAX 4
#define OBW 8
#else
#define VL 8
#define QB_MAX 2
#define OBW 4
#endif
#define OB 4

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int vi __attribute__((vector_size(VL * sizeof(int))));

static inline vf vld(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vst(float *p, vf v) { memcpy(p, &v, sizeof v); }

typedef struct {
    int Wp, L, Lr; /* row stride, flat outputs, rounded up to vectors */
    size_t PS;     /* plane stride */
    int off[9];    /* tap (u, v) at q + off[3u + v] */
} geom;

static void geom_of(int H, int W, geom *g)
{
    g->Wp = W + 1;
    g->L = H * g->Wp;
    g->Lr = (g->L + VL - 1) / VL * VL;
    /* reads of the last output vector reach Lr - 1 + 2*Wp + 2; those of dy
     * for the weight gradient Lr - 1 + Wp + 1, which must still be zeros */
    size_t ps = (size_t)(H + 2) * g->Wp + VL + 1;
    g->PS = (ps + 15) / 16 * 16;
    for (int t = 0; t < 9; t++)
        g->off[t] = (t / 3) * g->Wp + t % 3;
}

static int round_up(int n, int b) { return (n + b - 1) / b * b; }

/* C planes [H,W] of x into the padded layout (Cp >= C planes, the extra
 * ones zero). */
static void pad_planes(const float *x, int C, int Cp, int H, int W, const geom *g, float *xp)
{
    for (int c = 0; c < Cp; c++) {
        float *p = xp + (size_t)c * g->PS;
        if (c >= C) {
            memset(p, 0, sizeof(float) * g->PS);
            continue;
        }
        const float *s = x + (size_t)c * H * W;
        memset(p, 0, sizeof(float) * (size_t)(g->Wp + 1));
        for (int i = 0; i < H; i++) {
            memcpy(p + (size_t)(i + 1) * g->Wp + 1, s + (size_t)i * W, sizeof(float) * (size_t)W);
            p[(size_t)(i + 2) * g->Wp] = 0;
        }
        size_t z = (size_t)(H + 1) * g->Wp + 1;
        memset(p + z, 0, sizeof(float) * (g->PS - z));
    }
}

/* w [O,C,3,3] as [Op/OB][C][9][OB] (Op = O rounded up to OB, zeros past O);
 * flip: the input gradient's kernel, wf[c][o][u][v] = w[o][c][2-u][2-v],
 * as [Cp/OB][O][9][OB]. */
static void pack_weights(const float *w, int O, int C, int flip, float *wp)
{
    int n_out = flip ? C : O, n_in = flip ? O : C, np = round_up(n_out, OB);
    for (int ob = 0; ob < np; ob += OB)
        for (int ci = 0; ci < n_in; ci++)
            for (int t = 0; t < 9; t++)
                for (int k = 0; k < OB; k++) {
                    int co = ob + k;
                    float v = 0;
                    if (co < n_out)
                        v = flip ? w[((size_t)ci * C + co) * 9 + 8 - t] : w[((size_t)co * C + ci) * 9 + t];
                    wp[(((size_t)ob / OB * n_in + ci) * 9 + t) * OB + k] = v;
                }
}

/* yo[k][q0 .. q0 + QB*VL) = sum over channels and taps, for the OB output
 * channels of the packed block w [C][9][OB]. */
static inline __attribute__((always_inline)) void conv_block(const float *xp, size_t PS, int C, const float *w,
                                                             const int *off, int q0, int QB, float *yo, int Lr)
{
    vf a[OB][QB_MAX];
#pragma GCC unroll 4
    for (int k = 0; k < OB; k++)
#pragma GCC unroll 4
        for (int j = 0; j < QB; j++)
            a[k][j] = (vf){0};
    for (int c = 0; c < C; c++) {
        const float *xc = xp + (size_t)c * PS + q0, *wc = w + (size_t)c * 9 * OB;
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) {
            vf xv[QB_MAX];
#pragma GCC unroll 4
            for (int j = 0; j < QB; j++) {
                xv[j] = vld(xc + off[t] + j * VL);
                /* keep it in a register: folded into each FMA as a memory
                 * operand, it is loaded OB times and the loop is load-bound */
                __asm__("" : "+v"(xv[j]));
            }
#pragma GCC unroll 4
            for (int k = 0; k < OB; k++) {
                float s = wc[t * OB + k];
#pragma GCC unroll 4
                for (int j = 0; j < QB; j++)
                    a[k][j] += xv[j] * s;
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < OB; k++)
#pragma GCC unroll 4
        for (int j = 0; j < QB; j++)
            vst(yo + (size_t)k * Lr + q0 + j * VL, a[k][j]);
}

static void conv_block_n(const float *xp, size_t PS, int C, const float *w, const int *off, int q0, int QB,
                         float *yo, int Lr)
{
    switch (QB) {
    case 1: conv_block(xp, PS, C, w, off, q0, 1, yo, Lr); break;
    case 2: conv_block(xp, PS, C, w, off, q0, 2, yo, Lr); break;
#if QB_MAX > 2
    case 3: conv_block(xp, PS, C, w, off, q0, 3, yo, Lr); break;
    default: conv_block(xp, PS, C, w, off, q0, 4, yo, Lr); break;
#else
    default: conv_block(xp, PS, C, w, off, q0, 2, yo, Lr); break;
#endif
    }
}

/* One image: y [n_out,H,W] (=, plus bias b, or += when acc) from the
 * padded input xp (n_in planes) and the packed kernel wp; yo [OB][Lr]. */
static void conv_image(const float *xp, int n_in, const float *wp, int n_out, int H, int W, const geom *g,
                       const float *b, int acc, float *y, float *yo)
{
    int nv = g->Lr / VL;
    for (int ob = 0; ob < n_out; ob += OB) {
        const float *w = wp + (size_t)ob / OB * n_in * 9 * OB;
        for (int v = 0; v < nv; v += QB_MAX)
            conv_block_n(xp, g->PS, n_in, w, g->off, v * VL, nv - v < QB_MAX ? nv - v : QB_MAX, yo, g->Lr);
        for (int k = 0; k < OB && ob + k < n_out; k++) {
            float *dst = y + (size_t)(ob + k) * H * W, bias = b ? b[ob + k] : 0.0f;
            const float *src = yo + (size_t)k * g->Lr;
            for (int i = 0; i < H; i++, dst += W, src += g->Wp)
                if (acc)
                    for (int j = 0; j < W; j++)
                        dst[j] += src[j];
                else
                    for (int j = 0; j < W; j++)
                        dst[j] = src[j] + bias;
        }
    }
}

/* One level of a transposing reduction: lanes [i*2s, i*2s + s) of the
 * pair (a, b) added to the next s lanes, the pair's partial sums packed
 * side by side (mask lane i: (i / s) * 2s + i % s). */
#define FM(i, s) ((i) / (s) * 2 * (s) + (i) % (s))
#define FM8(s, o) FM(0, s) + (o), FM(1, s) + (o), FM(2, s) + (o), FM(3, s) + (o), FM(4, s) + (o), FM(5, s) + (o), \
                  FM(6, s) + (o), FM(7, s) + (o)
#if VL == 16
#define FMASK(s, o) {FM8(s, o), FM(8, s) + (o), FM(9, s) + (o), FM(10, s) + (o), FM(11, s) + (o), FM(12, s) + (o), \
                     FM(13, s) + (o), FM(14, s) + (o), FM(15, s) + (o)}
static const vi fold_lo[5] = {FMASK(1, 0), FMASK(2, 0), FMASK(4, 0), FMASK(8, 0), FMASK(16, 0)};
static const vi fold_hi[5] = {FMASK(1, 1), FMASK(2, 2), FMASK(4, 4), FMASK(8, 8), FMASK(16, 16)};
#else
#define FMASK(s, o) {FM8(s, o)}
static const vi fold_lo[4] = {FMASK(1, 0), FMASK(2, 0), FMASK(4, 0), FMASK(8, 0)};
static const vi fold_hi[4] = {FMASK(1, 1), FMASK(2, 2), FMASK(4, 4), FMASK(8, 8)};
#endif

static inline vf fold(vf a, vf b, int s)
{
    int l = s == 1 ? 0 : s == 2 ? 1 : s == 4 ? 2 : 3;
    return __builtin_shuffle(a, b, fold_lo[l]) + __builtin_shuffle(a, b, fold_hi[l]);
}

/* out[i] = the sum of the lanes of a[i], for n (a power of two, at most VL)
 * vectors, in a fixed order: pairs folded level by level, so each sum costs
 * about two shuffles instead of VL scalar additions. a is overwritten. */
static inline __attribute__((always_inline)) void hsum_tree(vf *a, int n, float *out)
{
    int s = VL / 2, n0 = n;
#pragma GCC unroll 16
    for (; n > 1; n /= 2, s /= 2)
#pragma GCC unroll 16
        for (int i = 0; i < n / 2; i++)
            a[i] = fold(a[2 * i], a[2 * i + 1], s);
#pragma GCC unroll 4
    for (; s >= 1; s /= 2)
        a[0] = fold(a[0], a[0], s);
    for (int i = 0; i < n0; i++)
        out[i] = a[0][i];
}

/* gw[k][0..2] += sum over the G images and q of dy_k[q] * xc[q + v],
 * v = 0, 1, 2, for the OBW output channels whose dy planes start at dq (PS
 * apart, offset Wp + 1 already added; an image's planes ims apart, as are
 * its input planes from xc), over nv vectors of q.  The accumulators run
 * across the images: their horizontal sums cost more than the products on
 * an 8x8 plane. */
static void wgrad_block(const float *dq, size_t PS, const float *xc, size_t ims, int G, int nv, float *gw,
                        size_t ldk)
{
    vf a[OBW][3];
#pragma GCC unroll 8
    for (int k = 0; k < OBW; k++)
        a[k][0] = a[k][1] = a[k][2] = (vf){0};
    for (int i = 0; i < G; i++, dq += ims, xc += ims)
        for (int q = 0; q < nv * VL; q += VL) {
            vf x0 = vld(xc + q), x1 = vld(xc + q + 1), x2 = vld(xc + q + 2);
            __asm__("" : "+v"(x0), "+v"(x1), "+v"(x2));
#pragma GCC unroll 8
            for (int k = 0; k < OBW; k++) {
                vf d = vld(dq + (size_t)k * PS + q);
                __asm__("" : "+v"(d)); /* one load for three FMAs, not three */
                a[k][0] += d * x0;
                a[k][1] += d * x1;
                a[k][2] += d * x2;
            }
        }
    vf r[OBW * 3];
#pragma GCC unroll 8
    for (int k = 0; k < OBW; k++)
        r[3 * k] = a[k][0], r[3 * k + 1] = a[k][1], r[3 * k + 2] = a[k][2];
    float out[OBW * 3];
    hsum_tree(r, VL, out);
    hsum_tree(r + VL, OBW * 3 - VL, out + VL);
    for (int k = 0; k < OBW; k++)
        for (int v = 0; v < 3; v++)
            gw[k * ldk + v] += out[3 * k + v];
}

/* Images padded together for the weight gradient: as many as fit in about
 * half a megabyte, at most a part's share (a function of the shape alone,
 * so the summation order does not depend on the thread count). */
static int wgrad_images(const kd_conv *c, const geom *g)
{
    size_t per = (size_t)(round_up(c->C, OB) + round_up(c->O, OBW > OB ? OBW : OB)) * g->PS;
    int G = (int)((128 * 1024) / per), cap = (c->N + KD_CONV_PARTS - 1) / KD_CONV_PARTS;
    return G < 1 ? 1 : G > cap ? cap : G;
}

/* Per-thread slice: padded input (Cp planes), padded dy (Op planes), the
 * flat output block [OB][Lr]. */
static void slice_floats(const kd_conv *c, const geom *g, size_t *xs, size_t *ds, size_t *ys)
{
    int Cp = round_up(c->C, OB), Op = round_up(c->O, OBW > OB ? OBW : OB), G = wgrad_images(c, g);
    *xs = (size_t)G * (Cp + Op) * g->PS; /* the group's images, each input then dy planes */
    *ds = 0;
    *ys = (size_t)OB * g->Lr;
}

int kd_conv_direct_applies(const kd_conv *c)
{
    return c->groups == 1 && c->kh == 3 && c->kw == 3 && c->stride == 1 && c->pad == 1;
}

size_t kd_conv_direct_workspace(const kd_conv *c)
{
    geom g;
    size_t xs, ds, ys, kw = (size_t)round_up(c->O, OB) * round_up(c->C, OB) * 9;
    geom_of(c->H, c->W, &g);
    slice_floats(c, &g, &xs, &ds, &ys);
    return (size_t)c->nt * (xs + ds + ys) + kw + KD_CONV_PARTS * ((size_t)c->O * c->C * 9 + c->O);
}

void kd_conv_direct_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y, float *ws)
{
    geom g;
    size_t xs, ds, ys, HW = (size_t)c->H * c->W;
    geom_of(c->H, c->W, &g);
    slice_floats(c, &g, &xs, &ds, &ys);
    float *wp = ws, *slices = wp + (size_t)round_up(c->O, OB) * round_up(c->C, OB) * 9;
    pack_weights(w, c->O, c->C, 0, wp);
#pragma omp parallel for num_threads(c->nt) schedule(dynamic)
    for (int n = 0; n < c->N; n++) {
        float *xp = slices + (size_t)omp_get_thread_num() * (xs + ds + ys), *yo = xp + xs + ds;
        pad_planes(x + (size_t)n * c->C * HW, c->C, c->C, c->H, c->W, &g, xp);
        conv_image(xp, c->C, wp, c->O, c->H, c->W, &g, b, 0, y + (size_t)n * c->O * HW, yo);
    }
}

void kd_conv_direct_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                             float *db, float *ws)
{
    geom g;
    size_t xs, ds, ys, HW = (size_t)c->H * c->W, K = (size_t)c->C * 9, part = (size_t)c->O * K + c->O;
    geom_of(c->H, c->W, &g);
    slice_floats(c, &g, &xs, &ds, &ys);
    int parts = c->N < KD_CONV_PARTS ? c->N : KD_CONV_PARTS, nv = g.Lr / VL, G = wgrad_images(c, &g);
    int Cp = round_up(c->C, OB), Op = round_up(c->O, OBW > OB ? OBW : OB);
    size_t ims = (size_t)(Cp + Op) * g.PS;
    float *wf = ws, *slices = wf + (size_t)round_up(c->O, OB) * round_up(c->C, OB) * 9;
    float *sums = slices + (size_t)c->nt * (xs + ds + ys);
    if (dx)
        pack_weights(w, c->O, c->C, 1, wf);
#pragma omp parallel for num_threads(c->nt) schedule(dynamic)
    for (int p = 0; p < parts; p++) {
        float *xp = slices + (size_t)omp_get_thread_num() * (xs + ds + ys), *yo = xp + xs;
        float *gw = sums + (size_t)p * part, *gb = gw + (size_t)c->O * K;
        int p0 = (int)((long)p * c->N / parts), p1 = (int)((long)(p + 1) * c->N / parts);
        memset(gw, 0, sizeof(float) * part);
        for (int n0 = p0; n0 < p1; n0 += G) {
            int m = p1 - n0 < G ? p1 - n0 : G;
            for (int i = 0; i < m; i++) { /* image i: Cp input planes, then Op dy planes */
                const float *dyn = dy + (size_t)(n0 + i) * c->O * HW;
                pad_planes(dyn, c->O, Op, c->H, c->W, &g, xp + i * ims + (size_t)Cp * g.PS);
                if (dw)
                    pad_planes(x + (size_t)(n0 + i) * c->C * HW, c->C, c->C, c->H, c->W, &g, xp + i * ims);
                if (db)
                    for (int o = 0; o < c->O; o++)
                        gb[o] += (float)plane_sum(dyn + (size_t)o * HW, (int)HW);
            }
            for (int ob = 0; dw && ob < c->O; ob += OBW) {
                /* in the last block the planes past O are zeros; its sums go
                 * through tmp, and only those of real channels are kept */
                float *gwo = gw + (size_t)ob * K;
                const float *dq = xp + (size_t)(Cp + ob) * g.PS + g.Wp + 1;
                for (int ci = 0; ci < c->C; ci++)
                    for (int u = 0; u < 3; u++) {
                        const float *xc = xp + (size_t)ci * g.PS + (size_t)u * g.Wp;
                        if (ob + OBW <= c->O) {
                            wgrad_block(dq, g.PS, xc, ims, m, nv, gwo + (size_t)ci * 9 + u * 3, K);
                            continue;
                        }
                        float tmp[OBW * 3] = {0};
                        wgrad_block(dq, g.PS, xc, ims, m, nv, tmp, 3);
                        for (int k = 0; ob + k < c->O; k++)
                            for (int v = 0; v < 3; v++)
                                gwo[(size_t)k * K + (size_t)ci * 9 + u * 3 + v] += tmp[k * 3 + v];
                    }
            }
            for (int i = 0; dx && i < m; i++)
                conv_image(xp + i * ims + (size_t)Cp * g.PS, c->O, wf, c->C, c->H, c->W, &g, NULL, 1,
                           dx + (size_t)(n0 + i) * c->C * HW, yo);
        }
    }
    kd_conv_sum_parts(c, sums, parts, K, 0, dw, db);
}
