#include "fm/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_rank = 0;
static fm_error_hook g_hook = NULL;

void fm_error_set_rank(int rank) { g_rank = rank; }
void fm_error_set_hook(fm_error_hook hook) { g_hook = hook; }

void fm_error_print(const char *msg)
{
    fprintf(stderr, "fmtrain: error: %s\n", msg);
    fflush(stderr);
}

_Noreturn void fm_fatal_at(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line, written at once so ranks do not interleave mid-line. */
    fprintf(stderr, "fmtrain: error: %s [rank %d, %s:%d]\n", msg, g_rank, file, line);
    fflush(stderr);
    if (g_hook) g_hook(1);
    exit(1);
}

void *fm_malloc_at(const char *file, int line, size_t n)
{
    /* cache-line aligned: a 16-float vector load then never straddles two lines */
    void *p = aligned_alloc(64, n ? (n + 63) / 64 * 64 : 64); /* C11: a multiple of the alignment */
    if (!p) fm_fatal_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *fm_calloc_at(const char *file, int line, size_t n)
{
    return memset(fm_malloc_at(file, line, n), 0, n);
}

int fm_errorf(char *buf, int cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, (size_t)cap, fmt, ap);
    va_end(ap);
    return n;
}
