/* Winograd 3x3 stride-1 pad-1 convolution (F(2x2,3x3) and F(4x4,3x3)) for
 * the ungrouped layers of 32 channels and more; kd_conv.c dispatches here
 * when kd_conv_wino_applies(c).
 *
 * An m x m output tile is the inverse transform A^T [Σ_c U_c ⊙ V_c] A of
 * the products of the transformed weights U = G g G^T and the transformed
 * a x a input patches V = B^T d B (a = m + 2): per transform position ξ
 * (a*a of them) one GEMM M_ξ[O,T] = U_ξ[O,C] . V_ξ[C,T] over a chunk of T
 * tiles.  Multiplications per output: 9C for im2col, (a/m)^2 C here (4C for
 * F(2,3), 2.25C for F(4,3)).
 *  - forward: y = wino(x, U(w));
 *  - input gradient: the convolution of dy with the flipped, transposed
 *    kernel, i.e. the same pass with U(w') (w'[c][o] = w[o][c] flipped) from
 *    O to C channels, accumulating into dx;
 *  - weight gradient: y is linear in U, so dU_ξ[O,C] = Σ_t D_ξ[O,t] V_ξ[C,t]
 *    with D = A dY A^T (the transposed output transform of the dy tile, zero
 *    outside the plane), and dW = G^T dU G (the transposed weight transform).
 * Tiles are numbered across the batch (image, tile row, tile column) and
 * taken in chunks of `tile_chunk` tiles by each core, whose transforms and
 * products stay in its own slice of the workspace; the products are
 * kd_gemm_serial calls inside one OpenMP loop.  dU is summed per fixed image
 * range ("part", their number set by the layer's shape only) and then in
 * part order, so every result is bit-identical whatever the thread count.
 * The transforms run on 16 tiles (or 16 weight pairs) at once, one vector
 * lane each. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_gemm.h"
#include "kd_layers_impl.h"

#define LANES 16

/* Transform matrices (Lavin & Gray): BT [a,a], G [a,3], AT [m,a]; and
 * their transposes for the weight gradient, A [a,m] and GT [3,a]. */
static const float BT2[16] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
static const float G2[12] = {1, 0, 0, .5f, .5f, .5f, .5f, -.5f, .5f, 0, 0, 1};
static const float AT2[8] = {1, 1, 1, 0, 0, 1, -1, -1};
static const float A2[8] = {1, 0, 1, 1, 1, -1, 0, -1};
static const float GT2[12] = {1, .5f, .5f, 0, 0, .5f, -.5f, 0, 0, .5f, .5f, 1};
static const float BT4[36] = {4, 0, -5, 0,  1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0,
                              0, -2, -1, 2, 1, 0, 0, 2,  -1, -2, 1, 0, 0, 4, 0, -5, 0, 1};
static const float G4[18] = {1 / 4.f,  0,        0,       -1 / 6.f, -1 / 6.f, -1 / 6.f, -1 / 6.f, 1 / 6.f, -1 / 6.f,
                             1 / 24.f, 1 / 12.f, 1 / 6.f, 1 / 24.f, -1 / 12.f, 1 / 6.f, 0,        0,       1};
static const float AT4[24] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0, 0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1};
static const float A4[24] = {1, 0, 0, 0, 1, 1, 1, 1, 1, -1, 1, -1, 1, 2, 4, 8, 1, -2, 4, -8, 0, 0, 0, 1};
static const float GT4[18] = {1 / 4.f, -1 / 6.f, -1 / 6.f, 1 / 24.f, 1 / 24.f,  0, 0, -1 / 6.f, 1 / 6.f,
                              1 / 12.f, -1 / 12.f, 0,      0,        -1 / 6.f, -1 / 6.f, 1 / 6.f, 1 / 6.f, 1};

typedef struct {
    int m, a, aa;           /* output tile side, input tile side, a*a */
    int th, tw, tpi;        /* tiles per column, per row, per image */
    int parts, tc;          /* dW parts, tiles per chunk */
} wgeo;

/* ------------------------------------------------------------- the rule */

/* KDPIPE_CONV=gemm forces im2col + GEMM, =wino2 / =wino4 Winograd F(2,3) /
 * F(4,3) on every eligible shape; unset, the measured rule below. */
static int wino_forced = -1; /* -1 KDPIPE_CONV, 0 the rule, 1 gemm, 2 / 4 */

void kd_conv_wino_force(int mode) { wino_forced = mode; }

/* Read at every kd_conv_init, not once: tests switch KDPIPE_CONV between cases. */
int kd_conv_wino_mode(void)
{
    if (wino_forced >= 0)
        return wino_forced;
    const char *e = getenv("KDPIPE_CONV");
    return !e || !*e ? 0 : !strcmp(e, "gemm") ? 1 : !strcmp(e, "wino2") ? 2 : !strcmp(e, "wino4") ? 4 : 0;
}

/* Output tile side for c, or 0 where Winograd cannot run.  Which layers it
 * takes is kd_conv.c's rule (measured against im2col + GEMM and the direct
 * kernel: bench/results-wino.md, bench/results-layers.md); here only
 * F(4x4,3x3) from 8x8 planes up, F(2x2,3x3) below (a 4x4 plane is one 6x6
 * tile, mostly padding).  F(4,3) stays within 2e-5 of the direct result at
 * every zoo shape (tests/unit/test_conv_wino.c), F(2,3) within 3e-6. */
int kd_conv_wino_tile(const kd_conv *c)
{
    if (c->groups != 1 || c->kh != 3 || c->kw != 3 || c->stride != 1 || c->pad != 1 || c->C < 32 || c->O < 32 ||
        c->H < 4 || c->W < 4)
        return 0;
    int f = kd_conv_wino_mode();
    if (f == 1)
        return 0;
    if (f == 2 || f == 4)
        return f;
    return c->H >= 8 && c->W >= 8 ? 4 : 2;
}

int kd_conv_wino_applies(const kd_conv *c) { return kd_conv_wino_tile(c) != 0; }

static void geometry(const kd_conv *c, wgeo *g)
{
    int m = c->wm, a = m + 2;
    g->m = m, g->a = a, g->aa = a * a;
    g->th = (c->H + m - 1) / m, g->tw = (c->W + m - 1) / m, g->tpi = g->th * g->tw;
    /* parts: as many of KD_CONV_PARTS as keep their dU within 4M floats */
    size_t du = (size_t)g->aa * c->O * c->C, p = ((size_t)4 << 20) / du;
    g->parts = p > 8 ? 8 : p < 2 ? 2 : (int)p;
    if (g->parts > c->N)
        g->parts = c->N;
    /* chunks of 128 tiles (the GEMMs repack U_ξ per call: 128 columns pay
     * for it; 64 and 256 measured no better) unless a core's slice would
     * pass 4M floats */
    size_t per = (size_t)g->aa * (c->C + c->O), tc = ((size_t)4 << 20) / per;
    tc = tc > 128 ? 128 : tc < 32 ? 32 : tc;
    g->tc = (int)(tc / LANES * LANES);
}

static size_t slice_floats(const kd_conv *c, const wgeo *g) { return (size_t)g->aa * (c->C + c->O) * g->tc; }

size_t kd_conv_wino_workspace(const kd_conv *c)
{
    wgeo g;
    geometry(c, &g);
    size_t u = (size_t)g.aa * c->O * c->C;
    return u + (size_t)c->nt * slice_floats(c, &g) + (size_t)g.parts * u;
}

/* ------------------------------------------------------------ transforms */

/* out[p*op + q*oq] = Σ_k L[p][k] in[k*ik + q*iq] for p < R, q < nq, on
 * LANES lanes (strides in lane vectors), L [R,S]. */
static inline __attribute__((always_inline)) void lmul(const float *L, const int R, const int S, const int nq,
                                                       const float *in, const int ik, const int iq, float *out,
                                                       const int op, const int oq)
{
#pragma GCC unroll 6
    for (int p = 0; p < R; p++)
#pragma GCC unroll 6
        for (int q = 0; q < nq; q++) {
            float *ov = out + (p * op + q * oq) * LANES;
            for (int l = 0; l < LANES; l++)
                ov[l] = 0;
#pragma GCC unroll 6
            for (int k = 0; k < S; k++) {
                float f = L[p * S + k];
                const float *iv = in + (k * ik + q * iq) * LANES;
                if (f != 0)
#pragma omp simd
                    for (int l = 0; l < LANES; l++)
                        ov[l] += f * iv[l];
            }
        }
}

/* out [R,R] = L in L^T, in [S,S]: the rows, then the columns.  Inlined
 * with constant L, R, S (the wrappers below), so that the loops unroll and
 * the zero and unit coefficients fold away. */
static inline __attribute__((always_inline)) void tf2(const float *L, const int R, const int S, const float *in,
                                                      float *out)
{
    float t[6 * 6 * LANES];
    lmul(L, R, S, S, in, S, 1, t, S, 1);
    lmul(L, R, S, R, t, 1, S, out, 1, R);
}

#define TF(name, L2, R2, S2, L4, R4, S4)                                                                       \
    static void name(int m, const float *in, float *out)                                                          \
    {                                                                                                             \
        if (m == 2)                                                                                               \
            tf2(L2, R2, S2, in, out);                                                                             \
        else                                                                                                      \
            tf2(L4, R4, S4, in, out);                                                                             \
    }
TF(tf_input, BT2, 4, 4, BT4, 6, 6)  /* V = B^T d B */
TF(tf_output, AT2, 2, 4, AT4, 4, 6) /* Y = A^T M A */
TF(tf_dy, A2, 4, 2, A4, 6, 4)       /* D = A dY A^T */
TF(tf_weight, G2, 4, 3, G4, 6, 3)   /* U = G g G^T */
TF(tf_dw, GT2, 3, 4, GT4, 3, 6)     /* dW = G^T dU G */

/* Where the tiles of a lane block start: plane offset of (n, row y0, col x0),
 * y0/x0 the patch's top-left corner (may be outside the plane). */
typedef struct {
    int n[LANES], y0[LANES], x0[LANES], nv;
} tblock;

static void block_at(const wgeo *g, long t0, long tend, int off, tblock *b)
{
    b->nv = tend - t0 < LANES ? (int)(tend - t0) : LANES;
    for (int l = 0; l < b->nv; l++) {
        long t = t0 + l;
        int r = (int)(t % g->tpi);
        b->n[l] = (int)(t / g->tpi), b->y0[l] = r / g->tw * g->m + off, b->x0[l] = r % g->tw * g->m + off;
    }
}

/* d [P,P,LANES] = the P x P patches of channel ch (of nch) of the block's
 * tiles in x [N,nch,H,W], zero outside the plane and beyond nv.  A run of
 * lanes in one tile row reads its P input rows once, zero-padded, into rb
 * (the per-element bounds checks were a quarter of the time); the patches
 * are then strided reads of rb. */
static inline __attribute__((always_inline)) void gather_m(const kd_conv *c, const tblock *b, const float *x,
                                                           int nch, int ch, int P, const int m, float *d)
{
    int H = c->H, W = c->W;
    float rb[6][LANES * 4 + 8];
    for (int l0 = 0; l0 < LANES;) {
        if (l0 >= b->nv) {
            for (int k = 0; k < P * P; k++)
                for (int l = l0; l < LANES; l++)
                    d[k * LANES + l] = 0;
            break;
        }
        int l1 = l0 + 1;
        while (l1 < b->nv && b->n[l1] == b->n[l0] && b->y0[l1] == b->y0[l0])
            l1++;
        const float *pl = x + ((size_t)b->n[l0] * nch + ch) * H * W;
        int xs = b->x0[l0], len = (l1 - l0 - 1) * m + P, lo = xs < 0 ? -xs : 0, hi = xs + len > W ? W - xs : len;
        for (int i = 0; i < P; i++) {
            int yy = b->y0[l0] + i;
            float *r = rb[i];
            if (yy < 0 || yy >= H) {
                memset(r, 0, sizeof(float) * (size_t)len);
                continue;
            }
            for (int j = 0; j < lo; j++)
                r[j] = 0;
            memcpy(r + lo, pl + (size_t)yy * W + xs + lo, sizeof(float) * (size_t)(hi - lo));
            for (int j = hi; j < len; j++)
                r[j] = 0;
        }
        for (int i = 0; i < P; i++)
            for (int j = 0; j < P; j++) {
                float *dv = d + (i * P + j) * LANES;
                const float *r = rb[i] + j - l0 * m;
                for (int l = l0; l < l1; l++)
                    dv[l] = r[l * m];
            }
        l0 = l1;
    }
}

static void gather(const kd_conv *c, const tblock *b, const float *x, int nch, int ch, int P, int m, float *d)
{
    if (m == 2)
        gather_m(c, b, x, nch, ch, P, 2, d);
    else
        gather_m(c, b, x, nch, ch, P, 4, d);
}

/* V [aa, nch, ld]: the input transforms of tiles [t0, t1) of x (nch channels). */
static void input_tf(const kd_conv *c, const wgeo *g, const float *x, int nch, long t0, long t1, float *V, int ld)
{
    float d[36 * LANES], v[36 * LANES];
    tblock b;
    for (long s = t0; s < t1; s += LANES) {
        block_at(g, s, t1, -1, &b);
        for (int ch = 0; ch < nch; ch++) {
            gather(c, &b, x, nch, ch, g->a, g->m, d);
            tf_input(g->m, d, v);
            float *dst = V + (size_t)ch * ld + (s - t0);
            for (int k = 0; k < g->aa; k++)
                for (int l = 0; l < LANES; l++)
                    dst[(size_t)k * nch * ld + l] = v[k * LANES + l];
        }
    }
}

/* D [aa, O, ld] = A dY A^T of the m x m dy tiles [t0, t1) (zero outside). */
static void dy_tf(const kd_conv *c, const wgeo *g, const float *dy, long t0, long t1, float *D, int ld)
{
    float d[36 * LANES], v[36 * LANES];
    tblock b;
    for (long s = t0; s < t1; s += LANES) {
        block_at(g, s, t1, 0, &b);
        for (int o = 0; o < c->O; o++) {
            gather(c, &b, dy, c->O, o, g->m, g->m, d);
            tf_dy(g->m, d, v);
            float *dst = D + (size_t)o * ld + (s - t0);
            for (int k = 0; k < g->aa; k++)
                for (int l = 0; l < LANES; l++)
                    dst[(size_t)k * c->O * ld + l] = v[k * LANES + l];
        }
    }
}

/* out [N,nch,H,W] (+)= A^T M A for tiles [t0, t1), M [aa, nch, ld]; plus
 * bias[ch] when bias, added to out when acc. */
static void output_tf(const kd_conv *c, const wgeo *g, const float *M, int nch, long t0, long t1, int ld,
                      const float *bias, int acc, float *out)
{
    float mv[36 * LANES], r[16 * LANES];
    int H = c->H, W = c->W, m = g->m;
    tblock b;
    for (long s = t0; s < t1; s += LANES) {
        block_at(g, s, t1, 0, &b);
        for (int ch = 0; ch < nch; ch++) {
            const float *src = M + (size_t)ch * ld + (s - t0);
            for (int k = 0; k < g->aa; k++)
                for (int l = 0; l < LANES; l++)
                    mv[k * LANES + l] = src[(size_t)k * nch * ld + l];
            tf_output(m, mv, r);
            float add = bias ? bias[ch] : 0.0f;
            for (int l = 0; l < b.nv; l++) {
                float *pl = out + ((size_t)b.n[l] * nch + ch) * H * W;
                int y0 = b.y0[l], x0 = b.x0[l];
                for (int i = 0; i < m && y0 + i < H; i++)
                    for (int j = 0; j < m && x0 + j < W; j++) {
                        float *p = pl + (y0 + i) * W + x0 + j;
                        float val = r[(i * m + j) * LANES + l] + add;
                        *p = acc ? *p + val : val;
                    }
            }
        }
    }
}

/* U [aa, R, S] of the kernels w [O,C,3,3]: pair (r, s) is w[r][s] (R = O,
 * S = C), or with flip w[s][r] rotated by 180 degrees (R = C, S = O). */
static void weight_tf(const kd_conv *c, const wgeo *g, const float *w, int flip, float *U)
{
    int R = flip ? c->C : c->O, S = flip ? c->O : c->C;
    long np = (long)R * S;
#pragma omp parallel for num_threads(c->nt) schedule(static)
    for (long p0 = 0; p0 < np; p0 += LANES) {
        float d[9 * LANES], v[36 * LANES];
        int nv = np - p0 < LANES ? (int)(np - p0) : LANES;
        for (int l = 0; l < LANES; l++)
            for (int k = 0; k < 9; k++) {
                long p = p0 + l, r = p / S, s = p % S;
                d[k * LANES + l] = l >= nv ? 0.0f : flip ? w[(s * c->C + r) * 9 + 8 - k] : w[p * 9 + k];
            }
        tf_weight(g->m, d, v);
        for (int k = 0; k < g->aa; k++)
            memcpy(U + (size_t)k * np + p0, v + k * LANES, sizeof(float) * (size_t)nv);
    }
}

/* ------------------------------------------------------------- the passes */

/* out (+)= the Winograd convolution of in [N,cin,H,W] by U [aa, cout, cin],
 * tiles [t0, t1) in chunks, on the calling core (col: the core's slice). */
static void wino_chunks(const kd_conv *c, const wgeo *g, const float *in, int cin, int cout, const float *U,
                        long t0, long t1, const float *bias, int acc, float *out, float *col)
{
    float *V = col, *M = col + (size_t)g->aa * cin * g->tc;
    for (long s = t0; s < t1; s += g->tc) {
        long e = s + g->tc < t1 ? s + g->tc : t1;
        int nv = (int)(e - s);
        input_tf(c, g, in, cin, s, e, V, g->tc);
        for (int k = 0; k < g->aa; k++)
            kd_gemm_serial(0, 0, cout, nv, cin, 1.0f, U + (size_t)k * cout * cin, cin, V + (size_t)k * cin * g->tc,
                           g->tc, 0.0f, M + (size_t)k * cout * g->tc, g->tc);
        output_tf(c, g, M, cout, s, e, g->tc, bias, acc, out);
    }
}

static long part_tile(const kd_conv *c, const wgeo *g, int p)
{
    return (long)((long)p * c->N / g->parts) * g->tpi;
}

void kd_conv_wino_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y, float *ws)
{
    wgeo g;
    geometry(c, &g);
    float *U = ws, *slices = ws + (size_t)g.aa * c->O * c->C;
    weight_tf(c, &g, w, 0, U);
    long T = (long)c->N * g.tpi, nch = (T + g.tc - 1) / g.tc;
#pragma omp parallel for num_threads(c->nt) schedule(dynamic)
    for (long k = 0; k < nch; k++) {
        float *col = slices + (size_t)omp_get_thread_num() * slice_floats(c, &g);
        long s = k * g.tc, e = s + g.tc < T ? s + g.tc : T;
        wino_chunks(c, &g, x, c->C, c->O, U, s, e, b, 0, y, col);
    }
}

/* dU of part p's tiles [t0, t1) into dUp [aa, O, C] (col: the core's slice). */
static void part_dw(const kd_conv *c, const wgeo *g, const float *x, const float *dy, long t0, long t1, float *dUp,
                    float *col)
{
    float *V = col, *D = col + (size_t)g->aa * c->C * g->tc;
    for (long s = t0; s < t1; s += g->tc) {
        long e = s + g->tc < t1 ? s + g->tc : t1;
        int nv = (int)(e - s);
        input_tf(c, g, x, c->C, s, e, V, g->tc);
        dy_tf(c, g, dy, s, e, D, g->tc);
        for (int k = 0; k < g->aa; k++)
            kd_gemm_serial(0, 1, c->O, c->C, nv, 1.0f, D + (size_t)k * c->O * g->tc, g->tc,
                           V + (size_t)k * c->C * g->tc, g->tc, s > t0 ? 1.0f : 0.0f, dUp + (size_t)k * c->O * c->C,
                           c->C);
    }
}

void kd_conv_wino_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                           float *db, float *ws)
{
    wgeo g;
    geometry(c, &g);
    size_t u = (size_t)g.aa * c->O * c->C;
    float *U = ws, *slices = ws + u, *sums = slices + (size_t)c->nt * slice_floats(c, &g);
    if (dx)
        weight_tf(c, &g, w, 1, U);
    if (dx || dw) {
#pragma omp parallel for num_threads(c->nt) schedule(dynamic)
        for (int p = 0; p < g.parts; p++) {
            float *col = slices + (size_t)omp_get_thread_num() * slice_floats(c, &g);
            long t0 = part_tile(c, &g, p), t1 = part_tile(c, &g, p + 1);
            if (dw)
                part_dw(c, &g, x, dy, t0, t1, sums + p * u, col);
            if (dx)
                wino_chunks(c, &g, dy, c->O, c->C, U, t0, t1, NULL, 1, dx, col);
        }
    }
    if (dw) { /* dW += G^T (Σ_p dU_p) G, parts in order */
        long np = (long)c->O * c->C;
#pragma omp parallel for num_threads(c->nt) schedule(static)
        for (long p0 = 0; p0 < np; p0 += LANES) {
            float d[36 * LANES], v[9 * LANES];
            int nv = np - p0 < LANES ? (int)(np - p0) : LANES;
            for (int k = 0; k < g.aa; k++)
                for (int l = 0; l < LANES; l++) {
                    float acc = 0;
                    for (int p = 0; l < nv && p < g.parts; p++)
                        acc += sums[p * u + (size_t)k * np + p0 + l];
                    d[k * LANES + l] = acc;
                }
            tf_dw(g.m, d, v);
            for (int l = 0; l < nv; l++)
                for (int k = 0; k < 9; k++)
                    dw[(p0 + l) * 9 + k] += v[k * LANES + l];
        }
    }
    if (db) { /* image by image in order, in double */
        size_t P = (size_t)c->H * c->W;
#pragma omp parallel for num_threads(c->nt) schedule(static)
        for (int o = 0; o < c->O; o++) {
            double s = 0;
            for (int n = 0; n < c->N; n++)
                s += plane_sum(dy + ((size_t)n * c->O + o) * P, (int)P);
            db[o] += (float)s;
        }
    }
}
