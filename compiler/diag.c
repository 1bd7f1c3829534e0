/* diag.c: diagnostics in the form `file:line:col: error: message`, followed
 * by the source line and a caret under the span, then any notes. */
#include "cnnc.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS 50

static const Source *src;
static FILE *out;
static int errors;
static const char *context;     /* names the place of messages without a line */

void diag_begin(const Source *s, FILE *o)
{
    src = s, out = o, errors = 0, context = NULL;
}

void diag_context(const char *place) { context = place; }

int diag_error_count(void) { return errors; }
const char *diag_path(void) { return src ? src->path : NULL; }
bool diag_too_many(void) { return errors >= MAX_ERRORS; }

/* The start of 1-based line `line` in the source, or NULL. */
static const char *line_start(int line)
{
    const char *p = src->text;
    for (int l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return p;
}

/* Prints the line and `^~~~` under columns [col, col+len). Columns count
 * characters, so UTF-8 continuation bytes take no column. */
static void show_span(Loc loc)
{
    const char *p = line_start(loc.line);
    if (!p || loc.col < 1)
        return;
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 240)
        return;                         /* a huge line helps nobody */
    fprintf(out, "    %.*s\n    ", (int)n, p);
    int col = 1;
    for (size_t i = 0; i < n && col < loc.col; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c & 0xC0) == 0x80)
            continue;
        fputc(c == '\t' ? '\t' : ' ', out);
        col++;
    }
    fputc('^', out);
    for (int i = 1; i < loc.len; i++)
        fputc('~', out);
    fputc('\n', out);
}

static void report(const char *kind, Loc loc, const char *fmt, va_list ap)
{
    if (loc.line > 0)
        fprintf(out, "%s:%d:%d: %s: ", src->path, loc.line, loc.col, kind);
    else
        fprintf(out, "%s: %s: ", src->path, kind);
    if (loc.line <= 0 && context)
        fprintf(out, "%s: ", context);
    vfprintf(out, fmt, ap);
    fputc('\n', out);
    show_span(loc);
}

void error_at(Loc loc, const char *fmt, ...)
{
    if (++errors > MAX_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    report("error", loc, fmt, ap);
    va_end(ap);
    if (errors == MAX_ERRORS)
        fprintf(out, "%s: too many errors; stopping\n", src->path);
}

void warning_at(Loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("warning", loc, fmt, ap);
    va_end(ap);
}

void note(const char *fmt, ...)
{
    if (errors > MAX_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("note: ", out);
    vfprintf(out, fmt, ap);
    fputc('\n', out);
    va_end(ap);
}

void warning(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cnnc: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void file_error(const char *fmt, ...)
{
    if (++errors > MAX_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("cnnc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

_Noreturn void internal_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cnnc: internal compiler error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nThis is a bug in cnnc, not in your program; please report it with the .cnn file.\n", stderr);
    va_end(ap);
    exit(EXIT_BUG);
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    int n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
          : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || p + n > end)
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;       /* overlong */
    if (c == 0xED && p[1] >= 0xA0) return 0;      /* surrogates */
    if (c == 0xF0 && p[1] < 0x90) return 0;       /* overlong */
    if (c == 0xF4 && p[1] >= 0x90) return 0;      /* past U+10FFFF */
    return n;
}

#define MAX_LINE 65536

bool utf8_check(const Source *s)
{
    const unsigned char *p = (const unsigned char *)s->text, *end = p + s->size;
    int line = 1, col = 1;
    while (p < end) {
        if (col > MAX_LINE) {
            error_at((Loc){line, 1, 1}, "line %d is longer than %d characters", line, MAX_LINE);
            return false;
        }
        if (*p == 0) {
            error_at((Loc){line, col, 1}, "the file contains a NUL byte");
            return false;
        }
        int n = utf8_len(p, end);
        if (n == 0) {
            error_at((Loc){line, col, 1}, "invalid UTF-8 byte 0x%02X", *p);
            note("cnnc source files must be UTF-8");
            return false;
        }
        if (*p == '\n')
            line++, col = 1;
        else
            col++;
        p += n;
    }
    return true;
}
