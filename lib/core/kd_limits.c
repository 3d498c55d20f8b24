/* kd_limits — see kd_limits.h. */
#include "kd_limits.h"

#include <stdlib.h>

#include "kd_err.h"

long kd_env_bound(const char *env, const char *unit, long def, long max)
{
    const char *v = getenv(env);
    if (!v || !*v)
        return def;
    char *end;
    long mb = strtol(v, &end, 10);
    if (*end || mb < 1 || mb > max) {
        kd_err_set("%s='%s' is not a number of %s in [1, %ld]", env, v, unit, max);
        return -1;
    }
    return mb;
}

long kd_memory_bound_mb(void)
{
    return kd_env_bound(KD_MEMORY_BOUND_ENV, "MB", KD_MEMORY_BOUND_MB, 1L << 20);
}

long kd_image_bound_px(void)
{
    return kd_env_bound(KD_IMAGE_BOUND_ENV, "pixels", KD_IMAGE_BOUND_PX, 8192);
}
