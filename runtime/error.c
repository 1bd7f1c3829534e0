/* error.c -- the error convention and checked whole-file reading. */
#include "cnnrt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rt_fail(rt_err *e, const char *fmt, ...)
{
    if (!e)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Appends the rest of f to the growing buffer *buf of *len bytes (capacity
 * *cap), keeping room for a final NUL. */
static int slurp(FILE *f, char **buf, size_t *len, size_t *cap)
{
    for (;;) {
        if (*cap - *len < 2) {
            size_t ncap = *cap ? *cap * 2 : 65536;
            char *p = ncap > *cap ? realloc(*buf, ncap) : NULL;
            if (!p)
                return ENOMEM;
            *buf = p;
            *cap = ncap;
        }
        size_t got = fread(*buf + *len, 1, *cap - *len - 1, f);
        *len += got;
        if (got == 0)
            return ferror(f) ? (errno ? errno : EIO) : 0;
    }
}

int rt_read_file(const char *path, char **buf, size_t *len, rt_err *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 0;
    errno = 0;
    int e = slurp(f, buf, len, &cap);
    fclose(f);
    if (e) {
        free(*buf);
        *buf = NULL;
        *len = 0;
        return rt_fail(err, "%s: cannot read: %s", path, strerror(e));
    }
    (*buf)[*len] = '\0';
    return 0;
}

const char *rt_shape_str(int rank, const int64_t *dims, char *buf, size_t size)
{
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}
