/* Wall-clock seconds from a monotonic clock, for rates and timings. */
#ifndef FM_CLOCK_H
#define FM_CLOCK_H

#include <time.h>

static inline double fm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
