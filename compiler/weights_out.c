/* weights_out.c: --emit=weights: the network's built-in weights (INIT_DATA
 * parameters: an imported model's initializers) as a safetensors file under
 * cnnc's parameter names, in PyTorch's layouts: what `./NAME eval --weights`
 * and friends read. */
#include "cnnc.h"

#include "../runtime/cnnrt.h"

/* llvm.c writes an output's ElemType where the runtime reads an RT_ dtype */
_Static_assert(ET_F32 == RT_F32 && ET_U8 == RT_U8 && ET_I8 == RT_I8 && ET_BOOL == RT_BOOL && ET_I64 == RT_I64,
               "the runtime's dtypes are the compiler's ElemType");

bool weights_write(const Graph *g, const char *path)
{
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].init != INIT_DATA || !g->params[i].data) {
            fprintf(stderr, "cnnc: --emit=weights: parameter '%s' has no built-in value\n", g->params[i].name);
            return false;
        }
    rt_tensor *t = arena_alloc(sizeof(rt_tensor) * (size_t)(g->nparams + 1));
    for (int i = 0; i < g->nparams; i++) {
        const Param *p = &g->params[i];
        rt_tensor *x = &t[i];
        x->name = (char *)p->name, x->rank = p->shape.rank, x->count = shape_count(p->shape);
        x->data = (float *)p->data;
        for (int k = 0; k < p->shape.rank; k++)
            x->dims[k] = p->shape.d[k];
    }
    const char *key[] = {"format", "network"}, *val[] = {"pt", g->name};
    rt_err err = {{0}};
    if (rt_st_write(path, g->nparams, t, 2, key, val, &err) != 0) {     /* atomic: tmp, sync, rename */
        fprintf(stderr, "cnnc: %s\n", err.msg);
        return false;
    }
    return true;
}
