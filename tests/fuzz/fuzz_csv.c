/* fuzz_csv.c: libFuzzer target over the CSV data set reader (runtime/csv.c).
 * The input is the file. It is read three ways: the label in column 0 with
 * the width set by the first row, the label in column 2, and a width of 4
 * demanded. Each reading must succeed or fail with a message naming the
 * file; a data set read must be consistent (n rows of dim values, labels
 * checked against 10 classes, every row gathered by rt_data_batch). */
#include "cnnrt.h"
#include "fuzz_file.h"

#include <string.h>

static void use(const char *path, const rt_data *d)
{
    rt_err err = {{0}};
    if (d->n < 1 || d->dim < 0 || !d->labels || !d->f32 || !d->label_file ||
        strcmp(d->label_file, path) || d->first_line < 1)
        abort();
    if (rt_data_check_labels(d, 10, &err) && !strstr(err.msg, path))
        abort();
    float *x = malloc(sizeof(float) * (size_t)(d->dim ? d->dim : 1));
    int32_t y;
    for (int64_t i = 0; i < d->n; i++)
        rt_data_batch(d, &i, 1, 0.5f, x, &y);
    free(x);
}

static void read_as(const char *path, int label_col, int64_t dim)
{
    rt_data d;
    rt_err err = {{0}};
    if (rt_csv_load(path, label_col, dim, &d, &err)) {
        if (!strstr(err.msg, path) || d.n || d.f32 || d.labels)
            abort();                   /* a message naming the file; nothing owned */
        return;
    }
    if (dim > 0 && d.dim != dim)
        abort();
    use(path, &d);
    rt_data_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(0, data, size);
    read_as(path, 0, 0);
    read_as(path, 2, 0);
    read_as(path, 0, 4);
    return 0;
}
