/* Minimal test harness: CHECK counts failures and reports them; the test's main returns
 * check_report(), non-zero when any check failed. */
#ifndef FM_TEST_CHECK_H
#define FM_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

#include "fm/isa.h"

static int check_failures = 0, check_count = 0;
static const char *check_isa = NULL; /* the kernels' build under test, named in failures */

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        check_count++;                                                                   \
        if (!(cond)) {                                                                   \
            check_failures++;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s%s%s: ", __FILE__, __LINE__, check_isa ? check_isa : "", \
                    check_isa ? ": " : "", #cond);                                             \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
        }                                                                                \
    } while (0)

#define CHECK_NEAR(a, b, tol) \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %.3g)", (double)(a), (double)(b), (double)(tol))

/* Runs fn once under each build of the kernels this machine runs (include/fm/isa.h): an AVX-512
 * machine tests the AVX2 and SSE2 builds too. The default build is restored after. */
static inline void check_each_isa(void (*fn)(void))
{
    const fm_isa dflt = fm_isa_active();
    for (int i = 0; i < FM_ISA_COUNT; i++) {
        if (!fm_isa_supported((fm_isa)i)) continue;
        fm_isa_set((fm_isa)i);
        check_isa = fm_isa_name(i);
        fn();
    }
    fm_isa_set(dflt);
    check_isa = NULL;
}

static inline int check_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
