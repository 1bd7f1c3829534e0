/* weights.c: `--weights FILE` at compile time. Reads a safetensors file and
 * gives every parameter and buffer of the network its values there (init =
 * INIT_DATA, data = the file's tensor), which llvm.c builds into the output.
 *
 * The file is read and checked by the runtime's own code (runtime/
 * safetensors.c), so the rules and the messages are NAME_load's
 * (docs/formats.md, "Loading into a network"): the metadata network,
 * structure and crc32 must match when present; every parameter must be
 * there, F32, of exactly the network's shape; other tensors are ignored.
 * A parameter's problem is reported at the place in the source that made
 * it, naming the file and the tensor, and all of them are reported.
 *
 * It runs after backward_derive: a file's "structure" is the hash of the
 * graph with its gradients (graph_hash), as the generated program's.
 */
#include "cnnc.h"
#include "../runtime/cnnrt.h"

#include <stdlib.h>

/* Frees the values of the tensors no parameter took (a checkpoint's
 * momentum, a state_dict's extra layers): only the parameters' stay. */
static void release_unused(const Graph *g, rt_tensors *ts)
{
    for (int i = 0; i < ts->n; i++) {
        bool used = false;
        for (int k = 0; k < g->nparams && !used; k++)
            used = g->params[k].data == ts->t[i].data;
        if (!used) {
            free(ts->t[i].data);
            ts->t[i].data = NULL;
        }
    }
}

bool weights_attach(Graph *g, const char *path)
{
    rt_tensors *ts = arena_alloc(sizeof *ts);   /* never freed: the parameters point into it */
    rt_err err = {{0}};
    if (rt_st_read(path, ts, &err) || rt_st_check_meta(ts, g->name, graph_hash(g), path, &err)) {
        file_error("%s", err.msg);
        return false;
    }
    int before = diag_error_count();
    for (int i = 0; i < g->nparams && !diag_too_many(); i++) {
        Param *p = &g->params[i];
        const rt_tensor *t;
        if (rt_st_take(ts, p->name, p->shape.rank, p->shape.d, path, &t, &err)) {
            error_at(p->loc, "%s", err.msg);
            continue;
        }
        p->init = INIT_DATA;
        p->data = t->data;
    }
    release_unused(g, ts);
    return diag_error_count() == before;
}
