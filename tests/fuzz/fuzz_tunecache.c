/* fuzz_tunecache.c: libFuzzer target over the tuning cache reader
 * (compiler/tune.c). The input is the cache file. It is
 *  - parsed (tune_cache_parse): accepted, with every entry's tile one the
 *    GEMM routines can build, or refused with a reason;
 *  - read and rewritten by tune_save_cache with nothing tuned, which keeps
 *    every entry of a good cache and drops a damaged one: the file written
 *    must parse, with as many entries as the input had (0 if damaged).
 * Never a crash, a sanitizer report, a leak or an exit. The measuring
 * device (llvm.c) is not linked: a cache is read without it. The warnings
 * about damaged caches go to stderr: run with -close_fd_mask=2. */
#include "cnnc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* what tune.c takes from llvm.c and fuse.c, unused by the cache */
GemmJit *gemm_jit(const Gemm *g, int64_t m, bool fault, GemmBenchFn *fn) { (void)g, (void)m, (void)fault, (void)fn; abort(); }
void gemm_jit_free(GemmJit *j) { (void)j; abort(); }
const char *host_cpu_id(void) { return "fuzzcpu/0000000000000000"; }
bool example_loop(const LStmt *s) { (void)s; return false; }

static char path[256];

static size_t count_entries(const char *path, bool *ok)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    Vec entries = {0};
    const char *why = NULL;
    *ok = tune_cache_parse(buf, n, &entries, &why);
    if (!*ok && !why)
        abort();
    return (size_t)entries.n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(path, sizeof path, "%s/fuzz-tunecache-%ld.json", dir, (long)getpid());
    }
    Vec entries = {0};
    const char *why = NULL;
    bool good = tune_cache_parse((const char *)data, size, &entries, &why);
    if (!good && (!why || !*why))
        abort();
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();
    Tuning t = {{0}, {0}};                       /* rewritten with nothing tuned */
    if (!tune_save_cache(&t, path))
        abort();
    bool ok;
    size_t n = count_entries(path, &ok);
    if (!ok || n != (size_t)(good ? entries.n : 0))
        abort();
    remove(path);
    arena_release();
    return 0;
}
