/* fuzz_frontend.c: libFuzzer target over the compiler up to the loop IR
 * (UTF-8 check, lexer, parser, shape checking, the backward pass, lowering
 * to loops: all but LLVM). Any input must end in diagnostics or a
 * graph: never a crash, a sanitizer report, a leak, or an internal error
 * (which exits, and libFuzzer reports an exit as a finding). */
#include "cnnc.h"

#include <stdlib.h>
#include <string.h>

static FILE *sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sink)
        sink = fopen("/dev/null", "w");
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    Source src = {"fuzz.cnn", text, size};
    diag_begin(&src, sink);
    if (utf8_check(&src)) {
        Program *p = parse_program(&src);
        if (diag_error_count() == 0) {
            Graph *g = shape_check(p);
            if (g) {
                graph_print(sink, g);
                summary_print(sink, g);
                Backward *bw = g->has_loss && g->nloss ? backward_derive(g) : NULL;
                loops_print(sink, loops_lower(g, bw, true));
            }
        }
    }
    arena_release();
    free(text);
    return 0;
}
