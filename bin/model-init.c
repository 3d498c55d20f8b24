/* model-init — write a freshly initialised model file of a named
 * architecture (man model-init). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_cli.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_model.h"
#include "kd_model_io.h"

static const char help[] =
    "Usage: model-init --arch NAME [OPTION]... -o MODEL.h5\n"
    "Write a freshly initialised model file (initialised as PyTorch/torchvision\n"
    "initialise the same architecture, deterministically from --seed).\n"
    "\n"
    "  -a, --arch NAME       resnet18 resnet34 resnet50 resnet20 resnet56 resnet8x4\n"
    "                        resnet32x4 wrn_16_2 wrn_40_2 mobilenet_v2\n"
    "                        efficientnet_b0 mobilenet_v3_large\n"
    "  --in-channels C       input channels, 1 or 3 (default 3)\n"
    "  --num-classes K       linear classifier with K outputs (default 0: none)\n"
    "  --cifar-stem          resnet18/34/50: 3x3 stride-1 first conv, no max-pool\n"
    "  --head mlp:H:E[:bn]   projection head Linear(D,H) [BN] ReLU Linear(H,E)\n"
    "  --width-mult W        channel multiplier (mobilenet_v2, efficientnet_b0,\n"
    "                        mobilenet_v3_large; default 1)\n"
    "  -o, --output FILE     the model file ('-': stdout; required)\n"
    "Common options:\n"
    "  --seed S              initialisation seed (default 0)\n"
    "  --threads N, --quiet  accepted for uniformity\n"
    "  -h, --help            this help;  --version  version\n"
    "Prints one JSON line: arch, params, buffers, feat_dim, num_classes, emb_dim.\n"
    "See model-init(1).\n";

enum { OPT_ARCH = KD_OPT_PROG, OPT_IN, OPT_K, OPT_CIFAR, OPT_HEAD, OPT_WIDTH };

static const struct option longopts[] = {
    {"arch", required_argument, 0, 'a'},
    {"in-channels", required_argument, 0, OPT_IN},
    {"num-classes", required_argument, 0, OPT_K},
    {"cifar-stem", no_argument, 0, OPT_CIFAR},
    {"head", required_argument, 0, OPT_HEAD},
    {"width-mult", required_argument, 0, OPT_WIDTH},
    {"output", required_argument, 0, 'o'},
    KD_STD_LONGOPTS,
    {0, 0, 0, 0}};

/* "mlp:H:E" or "mlp:H:E:bn" */
static void parse_head(const char *s, kd_arch_opts *o)
{
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", s);
    char *t = strtok_r(buf, ":", &save);
    if (!t || strcmp(t, "mlp"))
        kd_usage("--head: expected mlp:HIDDEN:OUT[:bn], got '%s'", s);
    char *h = strtok_r(NULL, ":", &save), *e = strtok_r(NULL, ":", &save), *bn = strtok_r(NULL, ":", &save);
    if (!h || !e || strtok_r(NULL, ":", &save))
        kd_usage("--head: expected mlp:HIDDEN:OUT[:bn], got '%s'", s);
    o->head_hidden = (int)kd_parse_long("--head HIDDEN", h, 1, 1 << 20);
    o->head_out = (int)kd_parse_long("--head OUT", e, 1, 1 << 20);
    if (bn) {
        if (strcmp(bn, "bn"))
            kd_usage("--head: the fourth field can only be 'bn', got '%s'", bn);
        o->head_bn = 1;
    }
}

/* HDF5 cannot write to a pipe: build the file aside, then copy it out. */
static int copy_to_stdout(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (fwrite(buf, 1, n, stdout) != n) {
            rc = -1;
            break;
        }
    fclose(f);
    if (fflush(stdout))
        rc = -1;
    return rc;
}

int main(int argc, char **argv)
{
    kd_std_opts std;
    kd_cli_init(&argv[0], help, &std);
    kd_arch_opts o;
    memset(&o, 0, sizeof o);
    o.in_channels = 3;
    const char *out = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "ha:o:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a': o.arch = optarg; break;
        case OPT_IN:
            o.in_channels = (int)kd_parse_long("--in-channels", optarg, 1, 3);
            if (o.in_channels == 2)
                kd_usage("--in-channels: 1 or 3");
            break;
        case OPT_K: o.num_classes = (int)kd_parse_long("--num-classes", optarg, 0, 1000000); break;
        case OPT_CIFAR: o.cifar_stem = 1; break;
        case OPT_HEAD: parse_head(optarg, &o); break;
        case OPT_WIDTH: o.width_mult = (float)kd_parse_double("--width-mult", optarg, 0.1, 4); break;
        case 'o': out = optarg; break;
        default:
            if (!kd_cli_std(opt, optarg, &std))
                kd_usage("unknown option");
        }
    }
    if (optind < argc)
        kd_usage("unexpected argument '%s'", argv[optind]);
    if (!o.arch)
        kd_usage("--arch is required (%s)", kd_model_arch_names());
    if (!out)
        kd_usage("-o MODEL.h5 is required");
    if (!strcmp(out, "-") && isatty(1))
        kd_usage("refusing to write a model file to a terminal");
    errno = 0;
    kd_model *m = kd_model_new(&o, std.seed);
    if (!m) {
        /* options that no architecture accepts are usage errors; running
         * out of memory building a valid one is not */
        kd_die(errno == ENOMEM ? KD_EXIT_FAIL : KD_EXIT_USAGE, "%s", kd_err_get());
    }
    char tmp[4200];
    const char *path = out;
    if (!strcmp(out, "-")) {
        snprintf(tmp, sizeof tmp, "%s/model-init.%d.h5", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
        path = tmp;
        kd_file_tmp_register(tmp);
    }
    if (kd_model_save(m, path))
        kd_die_err();
    if (path != out) {
        int rc = copy_to_stdout(path);
        kd_file_tmp_remove(path);
        if (rc)
            kd_die(KD_EXIT_FAIL, "stdout: write failed");
    } else {
        size_t np, nb;
        kd_model_params(m, &np);
        kd_model_buffers(m, &nb);
        kd_json j;
        kd_json_begin(&j, stdout);
        kd_json_str(&j, "arch", kd_model_opts(m)->arch);
        kd_json_int(&j, "params", (long long)np);
        kd_json_int(&j, "buffers", (long long)nb);
        kd_json_int(&j, "feat_dim", kd_model_feat_dim(m));
        kd_json_int(&j, "num_classes", kd_model_num_classes(m));
        kd_json_int(&j, "emb_dim", kd_model_emb_dim(m));
        kd_json_int(&j, "stages", kd_model_nstages(m));
        kd_json_int(&j, "seed", (long long)std.seed);
        kd_json_str(&j, "output", out);
        kd_json_end(&j);
    }
    kd_model_free(m);
    return 0;
}
