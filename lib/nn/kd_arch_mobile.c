/* kd_arch_mobile — torchvision 0.14's MobileNetV2, EfficientNet-B0 and
 * MobileNetV3-Large, with torchvision's module names and initialisation.
 * Stages (for --maps) end where the resolution halves next: /2, /4, /8,
 * /16, and /32 after the last 1x1 convolution. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"

/* Conv2dNormActivation: NAME.0 conv (no bias), NAME.1 BN, activation. */
static int conv_bn_act(kd_model *m, const char *name, int x, int out, int k, int stride, int groups, kd_act a,
                       float eps, float mom)
{
    char b[128];
    snprintf(b, sizeof b, "%s.0", name);
    int o = kd_b_conv(m, b, x, out, k, stride, groups, 0);
    snprintf(b, sizeof b, "%s.1", name);
    o = kd_b_bn(m, b, o, eps, mom);
    return a == KD_IDENTITY ? o : kd_b_act(m, o, a);
}

/* torchvision SqueezeExcitation: pool, fc1 (1x1 conv), act, fc2, gate, scale. */
static int squeeze_excite(kd_model *m, const char *name, int x, int squeeze, kd_act act, kd_act gate)
{
    char b[128];
    int C = kd_b_channels(m, x);
    int s = kd_b_gap(m, x);
    snprintf(b, sizeof b, "%s.fc1", name);
    s = kd_b_act(m, kd_b_pointwise(m, b, s, squeeze), act);
    snprintf(b, sizeof b, "%s.fc2", name);
    s = kd_b_act(m, kd_b_pointwise(m, b, s, C), gate);
    return kd_b_scale(m, x, s);
}

static int linear_normal(kd_model *m, const char *name, int x, int out, float std)
{
    kd_init w = {I_NORMAL, std}, z = {I_ZERO, 0};
    return kd_b_linear(m, name, x, out, 1, w, z);
}

static float width(const kd_model *m) { return m->o.width_mult > 0 ? m->o.width_mult : 1.0f; }

int kd_arch_mobilenet_v2(kd_model *m)
{
    static const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2},  {6, 64, 4, 2},
                                  {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    const float e = 1e-5f, mo = 0.1f;
    float wm = width(m);
    int inp = kd_make_divisible(32 * wm, 8), last = kd_make_divisible(1280 * (wm > 1 ? wm : 1), 8);
    int x = conv_bn_act(m, "features.0", 0, inp, 3, 2, 1, KD_RELU6, e, mo);
    int fi = 1;
    for (int s = 0; s < 7; s++) {
        int t = cfg[s][0], out = kd_make_divisible(cfg[s][1] * wm, 8);
        for (int i = 0; i < cfg[s][2]; i++, fi++) {
            int stride = i == 0 ? cfg[s][3] : 1;
            if (stride == 2)
                kd_b_stage(m, x);
            int hidden = (int)lround((double)inp * t);
            char pre[64], b[128];
            snprintf(pre, sizeof pre, "features.%d.conv", fi);
            int o = x, li = 0;
            if (t != 1) {
                snprintf(b, sizeof b, "%s.%d", pre, li++);
                o = conv_bn_act(m, b, o, hidden, 1, 1, 1, KD_RELU6, e, mo);
            }
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = conv_bn_act(m, b, o, hidden, 3, stride, hidden, KD_RELU6, e, mo);
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = kd_b_conv(m, b, o, out, 1, 1, 1, 0);
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = kd_b_bn(m, b, o, e, mo);
            x = (stride == 1 && inp == out) ? kd_b_add(m, o, x) : o;
            inp = out;
        }
    }
    char b[32];
    snprintf(b, sizeof b, "features.%d", fi);
    x = conv_bn_act(m, b, x, last, 1, 1, 1, KD_RELU6, e, mo);
    kd_b_stage(m, x);
    m->feat = kd_b_gap(m, x);
    if (m->o.num_classes > 0) {
        int d = kd_b_dropout(m, m->feat, 0.2f);
        m->logits = linear_normal(m, "classifier.1", d, m->o.num_classes, 0.01f);
        if (m->logits < 0)
            return -1;
    }
    return 0;
}

/* Stochastic depth (torchvision StochasticDepth "row") is implemented for
 * training with p = 0.2 * block / 16; in eval mode it is the identity. */
int kd_arch_efficientnet_b0(kd_model *m)
{
    /* expand, kernel, stride, in, out, layers */
    static const int cfg[7][6] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                                  {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                                  {6, 3, 1, 192, 320, 1}};
    const float e = 1e-5f, mo = 0.1f;
    float wm = width(m);
    int total = 0;
    for (int s = 0; s < 7; s++)
        total += cfg[s][5];
    int x = conv_bn_act(m, "features.0", 0, kd_make_divisible(cfg[0][3] * wm, 8), 3, 2, 1, KD_SILU, e, mo);
    int id = 0;
    for (int s = 0; s < 7; s++) {
        int out = kd_make_divisible(cfg[s][4] * wm, 8);
        for (int i = 0; i < cfg[s][5]; i++, id++) {
            int inp = i == 0 ? kd_make_divisible(cfg[s][3] * wm, 8) : out;
            int stride = i == 0 ? cfg[s][2] : 1, k = cfg[s][1];
            if (stride == 2)
                kd_b_stage(m, x);
            int exp = kd_make_divisible((double)inp * cfg[s][0], 8);
            char pre[64], b[128];
            snprintf(pre, sizeof pre, "features.%d.%d.block", s + 1, i);
            int o = x, li = 0;
            if (exp != inp) {
                snprintf(b, sizeof b, "%s.%d", pre, li++);
                o = conv_bn_act(m, b, o, exp, 1, 1, 1, KD_SILU, e, mo);
            }
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = conv_bn_act(m, b, o, exp, k, stride, exp, KD_SILU, e, mo);
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = squeeze_excite(m, b, o, inp / 4 > 1 ? inp / 4 : 1, KD_SILU, KD_SIGMOID);
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = conv_bn_act(m, b, o, out, 1, 1, 1, KD_IDENTITY, e, mo);
            if (stride == 1 && inp == out) {
                o = kd_b_droppath(m, o, 0.2f * (float)id / (float)total);
                o = kd_b_add(m, o, x);
            }
            x = o;
        }
    }
    int last = 4 * kd_make_divisible(cfg[6][4] * wm, 8);
    x = conv_bn_act(m, "features.8", x, last, 1, 1, 1, KD_SILU, e, mo);
    kd_b_stage(m, x);
    m->feat = kd_b_gap(m, x);
    if (m->o.num_classes > 0) {
        int d = kd_b_dropout(m, m->feat, 0.2f);
        kd_init w = {I_UNIFORM, (float)(1.0 / sqrt((double)m->o.num_classes))}, z = {I_ZERO, 0};
        m->logits = kd_b_linear(m, "classifier.1", d, m->o.num_classes, 1, w, z);
        if (m->logits < 0)
            return -1;
    }
    return 0;
}

int kd_arch_mobilenet_v3_large(kd_model *m)
{
    /* in, kernel, expanded, out, se, hardswish, stride */
    static const int cfg[15][7] = {
        {16, 3, 16, 16, 0, 0, 1},    {16, 3, 64, 24, 0, 0, 2},    {24, 3, 72, 24, 0, 0, 1},
        {24, 5, 72, 40, 1, 0, 2},    {40, 5, 120, 40, 1, 0, 1},   {40, 5, 120, 40, 1, 0, 1},
        {40, 3, 240, 80, 0, 1, 2},   {80, 3, 200, 80, 0, 1, 1},   {80, 3, 184, 80, 0, 1, 1},
        {80, 3, 184, 80, 0, 1, 1},   {80, 3, 480, 112, 1, 1, 1},  {112, 3, 672, 112, 1, 1, 1},
        {112, 5, 672, 160, 1, 1, 2}, {160, 5, 960, 160, 1, 1, 1}, {160, 5, 960, 160, 1, 1, 1}};
    const float e = 1e-3f, mo = 0.01f;
    float wm = width(m);
    int x = conv_bn_act(m, "features.0", 0, kd_make_divisible(16 * wm, 8), 3, 2, 1, KD_HSWISH, e, mo);
    for (int i = 0; i < 15; i++) {
        int inp = kd_make_divisible(cfg[i][0] * wm, 8), k = cfg[i][1];
        int exp = kd_make_divisible(cfg[i][2] * wm, 8), out = kd_make_divisible(cfg[i][3] * wm, 8);
        int stride = cfg[i][6];
        kd_act a = cfg[i][5] ? KD_HSWISH : KD_RELU;
        if (stride == 2)
            kd_b_stage(m, x);
        char pre[64], b[128];
        snprintf(pre, sizeof pre, "features.%d.block", i + 1);
        int o = x, li = 0;
        if (exp != inp) {
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = conv_bn_act(m, b, o, exp, 1, 1, 1, a, e, mo);
        }
        snprintf(b, sizeof b, "%s.%d", pre, li++);
        o = conv_bn_act(m, b, o, exp, k, stride, exp, a, e, mo);
        if (cfg[i][4]) {
            snprintf(b, sizeof b, "%s.%d", pre, li++);
            o = squeeze_excite(m, b, o, kd_make_divisible(exp / 4, 8), KD_RELU, KD_HSIGMOID);
        }
        snprintf(b, sizeof b, "%s.%d", pre, li++);
        o = conv_bn_act(m, b, o, out, 1, 1, 1, KD_IDENTITY, e, mo);
        x = (stride == 1 && inp == out) ? kd_b_add(m, o, x) : o;
    }
    int lastin = kd_b_channels(m, x);
    x = conv_bn_act(m, "features.16", x, 6 * lastin, 1, 1, 1, KD_HSWISH, e, mo);
    kd_b_stage(m, x);
    m->feat = kd_b_gap(m, x);
    if (m->o.num_classes > 0) {
        int last = kd_make_divisible(1280 * wm, 8);
        int h = linear_normal(m, "classifier.0", m->feat, last, 0.01f);
        h = kd_b_dropout(m, kd_b_act(m, h, KD_HSWISH), 0.2f);
        m->logits = linear_normal(m, "classifier.3", h, m->o.num_classes, 0.01f);
        if (m->logits < 0)
            return -1;
    }
    return 0;
}
