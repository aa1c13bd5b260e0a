/* Errors: one line on stderr naming what is wrong, the rank and the source line, then the
 * job ends. The numerics never call MPI; the program installs an abort hook that does. */
#ifndef FM_ERROR_H
#define FM_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Called after the message is printed; must not return. Default: exit(status). */
typedef void (*fm_error_hook)(int status);

void fm_error_set_rank(int rank);
void fm_error_set_hook(fm_error_hook hook);

/* The one line of a user-facing error ("fmtrain: error: MSG"), without ending anything: for
 * errors every rank knows alike, printed by rank 0 only. */
void fm_error_print(const char *msg);

/* An error that only this rank may know about: print and end the whole job now. */
_Noreturn void fm_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define FM_FATAL(...) fm_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* Like FM_FATAL but checks a condition. */
#define FM_CHECK(cond, ...) do { if (!(cond)) FM_FATAL(__VA_ARGS__); } while (0)

/* Allocation that cannot fail silently; 64-byte aligned; fm_calloc zeroes. */
void *fm_malloc_at(const char *file, int line, size_t n);
void *fm_calloc_at(const char *file, int line, size_t n);
#define fm_malloc(n) fm_malloc_at(__FILE__, __LINE__, (n))
#define fm_calloc(n) fm_calloc_at(__FILE__, __LINE__, (n))

/* Formats the message into buf (for errors reported to the caller rather than fatal). */
int fm_errorf(char *buf, int cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
