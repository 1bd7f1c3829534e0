/* csv.c -- data sets as CSV files of numbers.
 *
 *   file  = [ header eol ] row *( eol row ) *( eol blank ) [ eol ]
 *   row   = field *( "," field )         one field is the label
 *   field = *[ \t] number *[ \t]         as strtod reads it, finite
 *   eol   = "\n" | "\r\n"
 *
 * The header is a first line with a field that is not a number. */
#define _POSIX_C_SOURCE 200809L
#include "cnnrt.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A line [s, e) of the text, without its end of line; no counts from 1. */
typedef struct {
    const char *s, *e;
    int64_t no;
} line;

/* Reads the line at p (before end) into l; returns where the next one starts. */
static const char *get_line(const char *p, const char *end, line *l)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    l->s = p;
    l->e = nl ? nl : end;
    if (l->e > l->s && l->e[-1] == '\r')
        l->e--;
    l->no++;
    return nl ? nl + 1 : end;
}

static int blank(const line *l)
{
    for (const char *p = l->s; p < l->e; p++)
        if (*p != ' ' && *p != '\t')
            return 0;
    return 1;
}

static int64_t count_fields(const line *l)
{
    int64_t n = 1;
    for (const char *p = l->s; (p = memchr(p, ',', (size_t)(l->e - p))); p++)
        n++;
    return n;
}

/* The field [s, e) as a finite number. The text is NUL-terminated further on,
 * and no character after e can continue a number, so strtod stays inside. */
static int field_num(const char *s, const char *e, double *v)
{
    char *q;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (s == e)
        return -1;
    *v = strtod(s, &q);
    return q == e && isfinite(*v) ? 0 : -1;
}

static int all_numeric(const line *l)
{
    double v;
    for (const char *p = l->s;; p++) {
        const char *c = memchr(p, ',', (size_t)(l->e - p)), *fe = c ? c : l->e;
        if (field_num(p, fe, &v))
            return 0;
        if (!(p = c))
            return 1;
    }
}

/* The file being read: its name and length, the label's column, the number
 * of columns (from the first data row). */
typedef struct {
    const char *path;
    int64_t len;
    int label_col;
    int64_t ncols;
    rt_err *err;
} csv;

/* Field number col (from 0) of line l, text [s, e): the label or the next value. */
static int put_field(const csv *c, const line *l, int64_t col, const char *s, const char *e,
                     float **val, int32_t *y)
{
    double v;
    int len = e - s < 40 ? (int)(e - s) : 40;
    if (field_num(s, e, &v))
        return rt_fail(c->err, "%s:%" PRId64 ": column %" PRId64 ": '%.*s' is not a number",
                       c->path, l->no, col + 1, len, s);
    if (col == c->label_col) {
        if (v != floor(v) || v < INT32_MIN || v > INT32_MAX)
            return rt_fail(c->err, "%s:%" PRId64 ": column %" PRId64 ": label '%.*s' is not "
                                   "an integer", c->path, l->no, col + 1, len, s);
        *y = (int32_t)v;
    } else if (fabs(v) > FLT_MAX) {
        return rt_fail(c->err, "%s:%" PRId64 ": column %" PRId64 ": %.*s is too large for a "
                               "float", c->path, l->no, col + 1, len, s);
    } else {
        *(*val)++ = (float)v;
    }
    return 0;
}

/* A data row into val (ncols - 1 values) and *y. */
static int parse_row(const csv *c, const line *l, float *val, int32_t *y)
{
    int64_t n = count_fields(l);
    if (n != c->ncols)
        return rt_fail(c->err, "%s:%" PRId64 ": %" PRId64 " columns, expected %" PRId64,
                       c->path, l->no, n, c->ncols);
    const char *p = l->s;
    for (int64_t col = 0; col < n; col++) {
        const char *q = memchr(p, ',', (size_t)(l->e - p)), *fe = q ? q : l->e;
        if (put_field(c, l, col, p, fe, &val, y))
            return -1;
        p = fe + 1;
    }
    return 0;
}

/* After a blank line only blank lines may follow. */
static int check_tail(const csv *c, const line *first_blank, const char *p, const char *end)
{
    line l = *first_blank;
    while (p < end) {
        p = get_line(p, end, &l);
        if (!blank(&l))
            return rt_fail(c->err, "%s:%" PRId64 ": empty line inside the data", c->path,
                           first_blank->no);
    }
    return 0;
}

/* Sizes the data set from the first data row l; rows bounds the row count. */
static int start(csv *c, const line *l, int64_t expect_dim, int64_t rows, rt_data *d)
{
    c->ncols = count_fields(l);
    if (c->label_col >= c->ncols)
        return rt_fail(c->err, "%s:%" PRId64 ": the label is column %d but the line has %"
                               PRId64 " columns", c->path, l->no, c->label_col + 1, c->ncols);
    if (expect_dim > 0 && c->ncols - 1 != expect_dim)
        return rt_fail(c->err, "%s:%" PRId64 ": %" PRId64 " values besides the label, expected %"
                               PRId64, c->path, l->no, c->ncols - 1, expect_dim);
    d->dim = c->ncols - 1;
    d->first_line = l->no;
    if (rows > c->len / (2 * c->ncols - 1) + 1) /* a row takes 2 * ncols - 1 bytes at least */
        rows = c->len / (2 * c->ncols - 1) + 1;
    if (d->dim && rows > (int64_t)(SIZE_MAX / sizeof(float)) / d->dim)
        return rt_fail(c->err, "%s: too large", c->path);
    d->f32 = malloc((size_t)(rows * d->dim) * sizeof *d->f32 + 1);
    d->labels = malloc((size_t)rows * sizeof *d->labels);
    d->label_file = strdup(c->path);
    if (!d->f32 || !d->labels || !d->label_file)
        return rt_fail(c->err, "%s: out of memory", c->path);
    return 0;
}

static int parse_csv(csv *c, const char *buf, size_t len, int64_t expect_dim, rt_data *d)
{
    const char *p = buf, *end = buf + len;
    int64_t rows = 1;
    for (const char *q = buf; (q = memchr(q, '\n', (size_t)(end - q))); q++)
        rows++;
    line l = {0};
    p = get_line(p, end, &l);
    if (!blank(&l) && !all_numeric(&l))
        p = get_line(p, end, &l); /* the header */
    if (blank(&l))
        return rt_fail(c->err, "%s:%" PRId64 ": expected a row of numbers, found an empty line",
                       c->path, l.no);
    if (start(c, &l, expect_dim, rows, d))
        return -1;
    for (;;) {
        if (blank(&l))
            return check_tail(c, &l, p, end);
        if (parse_row(c, &l, d->f32 + d->n * d->dim, &d->labels[d->n]))
            return -1;
        d->n++;
        if (p >= end)
            return 0;
        p = get_line(p, end, &l);
    }
}

int rt_csv_load(const char *path, int label_col, int64_t expect_dim, rt_data *d, rt_err *err)
{
    char *buf;
    size_t len;
    csv c = {path, 0, label_col, 0, err};
    memset(d, 0, sizeof *d);
    if (label_col < 0)
        return rt_fail(err, "%s: label column %d is negative", path, label_col);
    if (rt_read_file(path, &buf, &len, err))
        return -1;
    c.len = (int64_t)len;
    int r = parse_csv(&c, buf, len, expect_dim, d);
    free(buf);
    if (r)
        rt_data_free(d);
    return r;
}
