#include "fm/fpmode.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>

#define FM_MXCSR_DAZ 0x0040u /* denormals are zero: subnormal inputs read as 0 */
#define FM_MXCSR_FTZ 0x8000u /* flush to zero: subnormal results written as 0 */

void fm_fpmode_set(void) { _mm_setcsr(_mm_getcsr() | FM_MXCSR_DAZ | FM_MXCSR_FTZ); }
int fm_fpmode_ok(void) { return (_mm_getcsr() & (FM_MXCSR_DAZ | FM_MXCSR_FTZ)) == (FM_MXCSR_DAZ | FM_MXCSR_FTZ); }

#elif defined(__aarch64__)
#include <stdint.h>

#define FM_FPCR_FZ (1ull << 24) /* flush subnormal inputs and results to zero */

static uint64_t fpcr_get(void)
{
    uint64_t v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return v;
}

void fm_fpmode_set(void) { __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr_get() | FM_FPCR_FZ)); }
int fm_fpmode_ok(void) { return (fpcr_get() & FM_FPCR_FZ) != 0; }

#else
void fm_fpmode_set(void) {}
int fm_fpmode_ok(void) { return 1; }
#endif

#if defined(__ELF__) && defined(__GNUC__) && !defined(FM_NO_PREINIT)
/* The executable's preinit array runs before any shared library's initialiser: OpenBLAS starts
 * its worker threads when it loads, and a new thread inherits its creator's mode, so this is
 * what puts them in it too (set in main, they would keep gradual underflow: two BLAS threads on
 * subnormal inputs measured 75 times slower than one). Static libraries only: a shared object
 * cannot have a preinit array; the simulator's build (tests/scaling/run.sh, an SMPI program is a
 * shared object) defines FM_NO_PREINIT and runs one BLAS thread. */
__attribute__((section(".preinit_array"), used)) static void (*const fm_fpmode_preinit)(void) = fm_fpmode_set;
#endif
