/* kd_arch_resnet — residual networks: torchvision's ResNet-18/34/50 (with an
 * optional CIFAR stem), the CIFAR ResNets of the CRD benchmark
 * (resnet20/56/8x4/32x4) and its wide ResNets (wrn_16_2, wrn_40_2).
 * Module names follow torchvision's resnet.py and CRD's resnet.py/wrn.py,
 * so their state dicts load as they are. */
#include <stdio.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"

#define BN_EPS 1e-5f
#define BN_MOM 0.1f

static const char *nm(char *buf, size_t len, const char *pre, const char *leaf)
{
    snprintf(buf, len, "%s%s", pre, leaf);
    return buf;
}

/* torchvision BasicBlock / CRD BasicBlock (identical names and wiring). */
static int basic_block(kd_model *m, const char *pre, int x, int planes, int stride)
{
    char b[128];
    int inpl = kd_b_channels(m, x);
    int o = kd_b_conv(m, nm(b, sizeof b, pre, "conv1"), x, planes, 3, stride, 1, 0);
    o = kd_b_bn(m, nm(b, sizeof b, pre, "bn1"), o, BN_EPS, BN_MOM);
    o = kd_b_act(m, o, KD_RELU);
    o = kd_b_conv(m, nm(b, sizeof b, pre, "conv2"), o, planes, 3, 1, 1, 0);
    o = kd_b_bn(m, nm(b, sizeof b, pre, "bn2"), o, BN_EPS, BN_MOM);
    int id = x;
    if (stride != 1 || inpl != planes) {
        id = kd_b_conv(m, nm(b, sizeof b, pre, "downsample.0"), x, planes, 1, stride, 1, 0);
        id = kd_b_bn(m, nm(b, sizeof b, pre, "downsample.1"), id, BN_EPS, BN_MOM);
    }
    return kd_b_act(m, kd_b_add(m, o, id), KD_RELU);
}

/* torchvision Bottleneck (v1.5: the stride is on the 3x3 conv). */
static int bottleneck(kd_model *m, const char *pre, int x, int planes, int stride)
{
    char b[128];
    int inpl = kd_b_channels(m, x), outp = planes * 4;
    int o = kd_b_conv(m, nm(b, sizeof b, pre, "conv1"), x, planes, 1, 1, 1, 0);
    o = kd_b_act(m, kd_b_bn(m, nm(b, sizeof b, pre, "bn1"), o, BN_EPS, BN_MOM), KD_RELU);
    o = kd_b_conv(m, nm(b, sizeof b, pre, "conv2"), o, planes, 3, stride, 1, 0);
    o = kd_b_act(m, kd_b_bn(m, nm(b, sizeof b, pre, "bn2"), o, BN_EPS, BN_MOM), KD_RELU);
    o = kd_b_conv(m, nm(b, sizeof b, pre, "conv3"), o, outp, 1, 1, 1, 0);
    o = kd_b_bn(m, nm(b, sizeof b, pre, "bn3"), o, BN_EPS, BN_MOM);
    int id = x;
    if (stride != 1 || inpl != outp) {
        id = kd_b_conv(m, nm(b, sizeof b, pre, "downsample.0"), x, outp, 1, stride, 1, 0);
        id = kd_b_bn(m, nm(b, sizeof b, pre, "downsample.1"), id, BN_EPS, BN_MOM);
    }
    return kd_b_act(m, kd_b_add(m, o, id), KD_RELU);
}

static int fc_default(kd_model *m, const char *name, int x)
{
    if (m->o.num_classes <= 0)
        return 0;
    int d = kd_b_channels(m, x);
    m->logits = kd_b_linear(m, name, x, m->o.num_classes, 1, kd_init_linear_default(d), kd_init_linear_default(d));
    return m->logits < 0 ? -1 : 0;
}

int kd_arch_resnet_tv(kd_model *m)
{
    static const int blocks18[4] = {2, 2, 2, 2}, blocks34[4] = {3, 4, 6, 3};
    const int *nb = !strcmp(m->arch, "resnet18") ? blocks18 : blocks34;
    int bottle = !strcmp(m->arch, "resnet50");
    int x;
    if (m->o.cifar_stem) {
        x = kd_b_conv(m, "conv1", 0, 64, 3, 1, 1, 0);
        x = kd_b_act(m, kd_b_bn(m, "bn1", x, BN_EPS, BN_MOM), KD_RELU);
    } else {
        x = kd_b_conv(m, "conv1", 0, 64, 7, 2, 1, 0);
        x = kd_b_act(m, kd_b_bn(m, "bn1", x, BN_EPS, BN_MOM), KD_RELU);
        x = kd_b_maxpool(m, x, 3, 2, 1);
    }
    for (int l = 0; l < 4; l++) {
        int planes = 64 << l;
        for (int i = 0; i < nb[l]; i++) {
            char pre[64];
            snprintf(pre, sizeof pre, "layer%d.%d.", l + 1, i);
            int stride = (l > 0 && i == 0) ? 2 : 1;
            x = bottle ? bottleneck(m, pre, x, planes, stride) : basic_block(m, pre, x, planes, stride);
        }
        kd_b_stage(m, x);
    }
    m->feat = kd_b_gap(m, x);
    return fc_default(m, "fc", m->feat);
}

/* CRD's ResNet(depth, num_filters): a 3x3 stem, three stages of
 * (depth-2)/6 basic blocks.  CRD pools with AvgPool2d(8), which for the
 * 32x32 inputs it is built for is global average pooling; we pool globally
 * so that any input size works. */
int kd_arch_resnet_cifar(kd_model *m)
{
    int depth, f[4];
    if (!strcmp(m->arch, "resnet20") || !strcmp(m->arch, "resnet56")) {
        depth = m->arch[6] == '2' ? 20 : 56;
        f[0] = 16, f[1] = 16, f[2] = 32, f[3] = 64;
    } else {
        depth = !strcmp(m->arch, "resnet8x4") ? 8 : 32;
        f[0] = 32, f[1] = 64, f[2] = 128, f[3] = 256;
    }
    int n = (depth - 2) / 6;
    int x = kd_b_conv(m, "conv1", 0, f[0], 3, 1, 1, 0);
    x = kd_b_act(m, kd_b_bn(m, "bn1", x, BN_EPS, BN_MOM), KD_RELU);
    for (int l = 0; l < 3; l++) {
        for (int i = 0; i < n; i++) {
            char pre[64];
            snprintf(pre, sizeof pre, "layer%d.%d.", l + 1, i);
            x = basic_block(m, pre, x, f[l + 1], (l > 0 && i == 0) ? 2 : 1);
        }
        kd_b_stage(m, x);
    }
    m->feat = kd_b_gap(m, x);
    return fc_default(m, "fc", m->feat);
}

/* CRD's WideResNet: pre-activation blocks; when a block changes width its
 * shortcut (convShortcut, 1x1) and its conv1 both read relu(bn1(x)). */
int kd_arch_wrn(kd_model *m)
{
    int depth = !strcmp(m->arch, "wrn_16_2") ? 16 : 40, k = 2;
    int n = (depth - 4) / 6;
    int ch[4] = {16, 16 * k, 32 * k, 64 * k};
    int x = kd_b_conv(m, "conv1", 0, ch[0], 3, 1, 1, 0);
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < n; i++) {
            char pre[64], b[128];
            snprintf(pre, sizeof pre, "block%d.layer.%d.", g + 1, i);
            int in = kd_b_channels(m, x), out = ch[g + 1], stride = (i == 0 && g > 0) ? 2 : 1;
            int equal = in == out;
            int a = kd_b_act(m, kd_b_bn(m, nm(b, sizeof b, pre, "bn1"), x, BN_EPS, BN_MOM), KD_RELU);
            int o = kd_b_conv(m, nm(b, sizeof b, pre, "conv1"), a, out, 3, stride, 1, 0);
            o = kd_b_act(m, kd_b_bn(m, nm(b, sizeof b, pre, "bn2"), o, BN_EPS, BN_MOM), KD_RELU);
            o = kd_b_conv(m, nm(b, sizeof b, pre, "conv2"), o, out, 3, 1, 1, 0);
            int sc = equal ? x : kd_b_conv(m, nm(b, sizeof b, pre, "convShortcut"), a, out, 1, stride, 1, 0);
            x = kd_b_add(m, o, sc);
        }
        if (g < 2)
            kd_b_stage(m, x);
    }
    x = kd_b_act(m, kd_b_bn(m, "bn1", x, BN_EPS, BN_MOM), KD_RELU);
    kd_b_stage(m, x);
    m->feat = kd_b_gap(m, x);
    if (m->o.num_classes > 0) {
        /* wrn.py zeroes the fc bias; the weight keeps nn.Linear's default */
        kd_init z = {I_ZERO, 0};
        m->logits = kd_b_linear(m, "fc", m->feat, m->o.num_classes, 1, kd_init_linear_default(ch[3]), z);
        if (m->logits < 0)
            return -1;
    }
    return 0;
}
