#include "kd_names.h"

#include <stdio.h>

static const char *const family[KD_NAME_NFAMILIES] = {"view", "emb", "feat", "logits", "map", "cam", "msd", "msdw", "ssa"};

const char *kd_name_family_str(kd_name_family f) { return f >= 0 && f < KD_NAME_NFAMILIES ? family[f] : "?"; }

char *kd_name(char *buf, size_t size, kd_name_family f, const char *prefix, int i)
{
    if (!prefix)
        prefix = f == KD_NAME_VIEW ? "" : KD_TEACHER_PREFIX;
    snprintf(buf, size, "%s%s%d", prefix, kd_name_family_str(f), i);
    return buf;
}
