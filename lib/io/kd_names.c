#include "kd_names.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const family[KD_NAME_NFAMILIES] = {"view", "emb", "feat", "logits", "map", "cam", "msd", "msdw", "ssa"};

const char *kd_name_family_str(kd_name_family f) { return f >= 0 && f < KD_NAME_NFAMILIES ? family[f] : "?"; }

char *kd_name(char *buf, size_t size, kd_name_family f, const char *prefix, int i)
{
    if (!prefix)
        prefix = f == KD_NAME_VIEW ? "" : KD_TEACHER_PREFIX;
    snprintf(buf, size, "%s%s%d", prefix, kd_name_family_str(f), i);
    return buf;
}

int kd_name_split(const char *name, char *prefix, size_t psize, kd_name_family *f, int *i)
{
    size_t l = strlen(name), k = l;
    while (k > 0 && isdigit((unsigned char)name[k - 1]))
        k--;
    if (k == l || l - k > 9)
        return -1;
    int best = -1;
    size_t bl = 0;
    for (int g = 0; g < KD_NAME_NFAMILIES; g++) {
        size_t fl = strlen(family[g]);
        if (fl <= k && fl > bl && !strncmp(name + k - fl, family[g], fl))
            best = g, bl = fl;
    }
    if (best < 0 || (prefix && k - bl >= psize))
        return -1;
    if (prefix) {
        memcpy(prefix, name, k - bl);
        prefix[k - bl] = 0;
    }
    *f = (kd_name_family)best;
    *i = atoi(name + k);
    return 0;
}
