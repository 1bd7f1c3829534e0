/* fuzz_onnx.c: libFuzzer target over the ONNX front end (compiler/onnx.c:
 * protobuf-c's decoding of the ModelProto, the checks of the model, every
 * operator's conversion) and what follows it up to the loop IR: the graph
 * printed, the summary, --loss mse with its backward pass, the lowering.
 * The input is the model file. Any input must end in diagnostics or a
 * graph: never a crash, a sanitizer report, a leak, or an internal error
 * (which exits, and libFuzzer reports an exit as a finding).
 *
 * The model is written to a directory of its own (in /dev/shm when there is
 * one), so that external data it names is looked for there: the importer
 * refuses absolute paths and "..", and that directory holds only the model.
 * A model of an odd number of bytes is read unbatched (--unbatched), so that
 * both readings are fuzzed. */
#include "cnnc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static FILE *sink;
static char path[256];

static void write_model(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        char dir[200];
        snprintf(dir, sizeof dir, "%s/fuzz-onnx-%ld", base, (long)getpid());
        if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0)
            abort();
        snprintf(path, sizeof path, "%s/model.onnx", dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sink)
        sink = fopen("/dev/null", "w");
    write_model(data, size);
    Source src = {path, "", 0};
    diag_begin(&src, sink);
    Graph *g = onnx_import(path, size % 2 == 1);
    if (g) {
        graph_print(sink, g);
        summary_print(sink, g);
        if (onnx_loss(g, "mse"))
            loops_print(sink, loops_lower(g, backward_derive(g), true));
    }
    arena_release();
    return 0;
}
