/* replay_main — libFuzzer's standalone-main pattern: a harness built with
 * an ordinary compiler, fed every file named on the command line (a
 * directory: every file in it) once, so that `make check` replays the seed
 * corpus and every crash input without clang.  Prints "NAME: N inputs". */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "scratch.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, k;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *b = realloc(buf, cap);
            if (!b) {
                fclose(f);
                free(buf);
                return -1;
            }
            buf = b;
        }
        k = fread(buf + len, 1, cap - len, f);
        len += k;
    } while (k);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        perror(path);
        free(buf);
        return -1;
    }
    /* an exact-size copy, so that a read past the input is a read past a malloc'ed block */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]))
                return 1;
            n++;
            continue;
        }
        struct dirent **ents;
        int k = scandir(argv[i], &ents, NULL, alphasort);
        if (k < 0) {
            perror(argv[i]);
            return 1;
        }
        for (int j = 0; j < k; j++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], ents[j]->d_name);
            struct stat fs;
            if (ents[j]->d_name[0] != '.' && !stat(p, &fs) && S_ISREG(fs.st_mode)) {
                if (run_file(p))
                    return 1;
                n++;
            }
            free(ents[j]);
        }
        free(ents);
    }
    fprintf(stderr, "%s: %ld inputs\n", argv[0], n);
    return 0;
}
