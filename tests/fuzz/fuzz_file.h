/* fuzz_file.h: the fuzzer's input as a file, for the readers that take a
 * path (IDX, CSV, images). The file is a memfd, named by its
 * /proc/self/fd/N path: in memory, never on disk, rewritten in place for
 * each input. */
#ifndef FUZZ_FILE_H
#define FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The path of a file holding exactly the n bytes at p. Each call reuses the
 * file of the same slot (0 or 1), so a target can keep two files. */
static const char *fuzz_file(int slot, const void *p, size_t n)
{
    static int fd[2] = {-1, -1};
    static char path[2][40];
    if (fd[slot] < 0) {
        if ((fd[slot] = memfd_create("fuzz_input", 0)) < 0)
            abort();
        snprintf(path[slot], sizeof path[slot], "/proc/self/fd/%d", fd[slot]);
    }
    if (ftruncate(fd[slot], 0) || (n && pwrite(fd[slot], p, n, 0) != (ssize_t)n))
        abort();
    return path[slot];
}

#endif
