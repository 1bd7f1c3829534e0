/* check_lib.c: the C API of a LeNet library (tests/weights/run.sh).
 *
 *   check_lib builtin W OUT   the library was built with --weights W:
 *       lenet_new(1) and lenet_new(12345) hold W's values bit for bit, as a
 *       lenet_load(W) does, and their outputs on the same examples are equal
 *       bit for bit; every parameter's built-in data is 64-byte aligned and
 *       RT_INIT_DATA; then lenet_new(1) is saved to OUT (a weights file).
 *   check_lib save OUT        a plain library: lenet_new(7) saved to OUT.
 * Exit 0 and "ok", else 1 with the first difference.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lenet.h"
#include "cnnrt.h"            /* the descriptor, for the built-in data's alignment */

extern const rt_net_desc lenet_desc;

enum { N = 5 };

static int64_t count(int i)
{
    int64_t dims[4], c = 1;
    int rank = lenet_param_shape(i, dims);
    for (int k = 0; k < rank; k++)
        c *= dims[k];
    return c;
}

static int same_params(lenet *a, lenet *b, const char *what)
{
    for (int i = 0; i < LENET_NUM_PARAMS; i++)
        if (memcmp(lenet_param(a, i), lenet_param(b, i), sizeof(float) * (size_t)count(i)) != 0) {
            printf("%s: parameter '%s' differs\n", what, lenet_param_name(i));
            return 0;
        }
    return 1;
}

static int same_outputs(lenet *a, lenet *b, const char *what)
{
    static float x[N * LENET_INPUT_SIZE], oa[N * LENET_OUTPUT_SIZE], ob[N * LENET_OUTPUT_SIZE];
    uint32_t s = 1;
    for (int i = 0; i < N * LENET_INPUT_SIZE; i++)
        s = s * 1664525u + 1013904223u, x[i] = (float)(s >> 8) / 16777216.0f;
    lenet_forward(a, N, x, oa);
    lenet_forward(b, N, x, ob);
    if (memcmp(oa, ob, sizeof oa) != 0) {
        printf("%s: the outputs differ (%g and %g first)\n", what, oa[0], ob[0]);
        return 0;
    }
    return 1;
}

static int aligned(void)
{
    for (int i = 0; i < lenet_desc.nparams; i++) {
        const rt_param_desc *p = &lenet_desc.params[i];
        if (p->init != RT_INIT_DATA || !p->data || (uintptr_t)p->data % 64) {
            printf("parameter '%s': init %lld, data %p: not 64-byte aligned built-in data\n", p->name,
                   (long long)p->init, (const void *)p->data);
            return 0;
        }
    }
    return 1;
}

static int builtin(const char *w, const char *out)
{
    lenet *a = lenet_new(1), *b = lenet_new(12345), *c = lenet_new(1);
    if (!a || !b || !c)
        return puts("out of memory"), 1;
    if (lenet_load(c, w))
        return printf("%s\n", lenet_error(c)), 1;
    int ok = aligned() && same_params(a, c, "new(1) and load") && same_params(b, c, "new(12345) and load") &&
             same_outputs(a, c, "new(1) and load") && same_outputs(b, c, "new(12345) and load");
    if (ok && lenet_save(a, out))
        ok = 0, printf("%s\n", lenet_error(a));
    lenet_free(a), lenet_free(b), lenet_free(c);
    return ok ? (puts("ok"), 0) : 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "builtin"))
        return builtin(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "save")) {
        lenet *n = lenet_new(7);
        if (!n || lenet_save(n, argv[2]))
            return printf("%s\n", lenet_error(n)), 1;
        lenet_free(n);
        return puts("ok"), 0;
    }
    fprintf(stderr, "usage: check_lib builtin W OUT | save OUT\n");
    return 2;
}
