/* fuzz_safetensors.c: libFuzzer target over the safetensors reader
 * (runtime/safetensors.c). Any input must be read or refused with a message:
 * never a crash, a sanitizer report or a leak. An input that reads is then
 * written back with rt_st_write (into a private directory under /dev/shm, or
 * TMPDIR where there is none) and read again, and the second
 * reading must equal the first: names, shapes, data and metadata. */
#include "cnnrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256], path[300];  /* the round trip's file */

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

/* A fresh directory for the round trip's file, removed at exit. */
static void make_dir(void)
{
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fuzz_safetensors.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    atexit(cleanup);
}

static void same(const rt_tensors *a, const rt_tensors *b)
{
    if (a->n != b->n || a->nmeta != b->nmeta)
        abort();
    for (int i = 0; i < a->n; i++) {
        const rt_tensor *x = &a->t[i], *y = &b->t[i];
        if (strcmp(x->name, y->name) || x->rank != y->rank || x->count != y->count ||
            memcmp(x->dims, y->dims, sizeof x->dims[0] * (size_t)x->rank) ||
            (x->count && memcmp(x->data, y->data, sizeof(float) * (size_t)x->count)))
            abort();
    }
    for (int i = 0; i < a->nmeta; i++)
        if (strcmp(a->meta_key[i], b->meta_key[i]) || strcmp(a->meta_val[i], b->meta_val[i]))
            abort();
}

/* Writes t and reads it back. The writer refuses what the reader accepts in
 * one case only: an empty tensor name. */
static void round_trip(const rt_tensors *t)
{
    rt_tensors u;
    rt_err err = {{0}};
    if (rt_st_write(path, t->n, t->t, t->nmeta, (const char *const *)t->meta_key,
                    (const char *const *)t->meta_val, &err)) {
        if (!strstr(err.msg, "empty, reserved or non-UTF-8 name")) {
            fprintf(stderr, "rt_st_write refused what rt_st_read_mem accepted: %s\n", err.msg);
            abort();
        }
        return;
    }
    if (rt_st_read(path, &u, &err)) {
        fprintf(stderr, "cannot read back what rt_st_write wrote: %s\n", err.msg);
        abort();
    }
    same(t, &u);
    rt_st_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        make_dir();
    rt_tensors t;
    rt_err err = {{0}};
    if (rt_st_read_mem(data, size, "fuzz.safetensors", &t, &err)) {
        if (!err.msg[0])
            abort();                      /* a failure must say why */
        return 0;
    }
    for (int i = 0; i < t.n; i++)
        rt_st_find(&t, t.t[i].name);
    for (int i = 0; i < t.nmeta; i++)
        rt_st_meta(&t, t.meta_key[i]);
    round_trip(&t);
    rt_st_free(&t);
    return 0;
}
