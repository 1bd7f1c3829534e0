/* weights_out.c: --emit=weights: the network's built-in weights (INIT_DATA
 * parameters: an imported model's initializers) as a safetensors file under
 * cnnc's parameter names, in PyTorch's layouts: what `./NAME eval --weights`
 * and friends read. */
#include "cnnc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* {"conv1.weight":{"dtype":"F32","shape":[6,1,5,5],"data_offsets":[0,600]},...},
 * padded with spaces to a multiple of 8 bytes */
static char *header(const Graph *g)
{
    char *h = "{";
    int64_t at = 0;
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = &g->params[i];
        char *dims = "";
        for (int k = 0; k < p->shape.rank; k++)
            dims = arena_printf("%s%s%lld", dims, k ? "," : "", (long long)p->shape.d[k]);
        int64_t bytes = 4 * shape_count(p->shape);
        h = arena_printf("%s%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%lld,%lld]}", h, i ? "," : "",
                         p->name, dims, (long long)at, (long long)(at + bytes));
        at += bytes;
    }
    h = arena_printf("%s}", h);
    size_t n = strlen(h);
    while (n % 8)
        h = arena_printf("%s ", h), n++;
    return h;
}

bool weights_write(const Graph *g, const char *path)
{
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].init != INIT_DATA || !g->params[i].data) {
            fprintf(stderr, "cnnc: --emit=weights: parameter '%s' has no built-in value\n", g->params[i].name);
            return false;
        }
    if (!path || strcmp(path, "-") == 0) {
        fprintf(stderr, "cnnc: --emit=weights needs -o FILE.safetensors\n");
        return false;
    }
    const char *tmp = arena_printf("%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", tmp, strerror(errno));
        return false;
    }
    char *h = header(g);
    uint64_t n = strlen(h);
    unsigned char len[8];
    for (int k = 0; k < 8; k++)
        len[k] = (unsigned char)(n >> (8 * k));
    bool ok = fwrite(len, 1, 8, f) == 8 && fwrite(h, 1, n, f) == n;
    for (int i = 0; ok && i < g->nparams; i++) {
        size_t count = (size_t)shape_count(g->params[i].shape);
        ok = fwrite(g->params[i].data, sizeof(float), count, f) == count;
    }
    if (fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "cnnc: cannot write '%s': %s\n", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}
