#include "fm/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_rank = 0;
static fm_error_hook g_hook = NULL;

void fm_error_set_rank(int rank) { g_rank = rank; }
void fm_error_set_hook(fm_error_hook hook) { g_hook = hook; }

/* msg into out with its control bytes (a newline or junk from a file or an argument) as \xNN,
 * so that an error stays one line. */
static const char *escaped(char *out, size_t cap, const char *msg)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 5 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f) o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *p);
        else out[o++] = (char)*p;
    }
    out[o] = '\0';
    return out;
}

/* One line, written at once (stderr is unbuffered) so that ranks do not interleave mid-line. */
void fm_error_print(const char *msg)
{
    char out[4096];
    fprintf(stderr, "fmtrain: error: %s\n", escaped(out, sizeof out, msg));
    fflush(stderr);
}

_Noreturn void fm_fatal_at(const char *file, int line, const char *fmt, ...)
{
    char msg[1024], out[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fmtrain: error: %s [rank %d, %s:%d]\n", escaped(out, sizeof out, msg), g_rank, file, line);
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
