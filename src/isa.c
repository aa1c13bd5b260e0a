/* The choice of the kernels' build (include/fm/isa.h) and the tables of the active one. */
#include "fm/isa.h"

#include <stdlib.h>

#include "fm/error.h"
#include "fm/kern_ops.h"
#include "fm/names.h"

static const char *const names[FM_ISA_COUNT] = {"baseline", "x86-64-v3", "x86-64-v4"};

const char *fm_isa_name(int isa) { return isa >= 0 && isa < FM_ISA_COUNT ? names[isa] : NULL; }

/* Every build's tables; NULL where this binary has no such build (FM_ISA_X86 is set by CMake
 * when it compiles the AVX2 and AVX-512 builds). */
#define TABLES(type) extern const type type##_baseline, type##_avx2, type##_avx512;
TABLES(fm_kern_ops)
TABLES(fm_conv_direct_ops)
TABLES(fm_coupling_ops)
TABLES(fm_rng_ops)
#if FM_ISA_X86
#define BUILDS(type) {&type##_baseline, &type##_avx2, &type##_avx512}
#else
#define BUILDS(type) {&type##_baseline, NULL, NULL}
#endif
static const fm_kern_ops *const kern[FM_ISA_COUNT] = BUILDS(fm_kern_ops);
static const fm_conv_direct_ops *const conv[FM_ISA_COUNT] = BUILDS(fm_conv_direct_ops);
static const fm_coupling_ops *const coupling[FM_ISA_COUNT] = BUILDS(fm_coupling_ops);
static const fm_rng_ops *const rng[FM_ISA_COUNT] = BUILDS(fm_rng_ops);

int fm_isa_supported(fm_isa isa)
{
    if (isa < 0 || isa >= FM_ISA_COUNT || !kern[isa]) return 0;
#if FM_ISA_X86
    __builtin_cpu_init();
    if (isa == FM_ISA_AVX512) return __builtin_cpu_supports("x86-64-v4");
    if (isa == FM_ISA_AVX2) return __builtin_cpu_supports("x86-64-v3");
#endif
    return 1;
}

/* The supported builds' names: a prefix of names[] (a CPU with AVX-512 has AVX2). */
static const char *supported_name(int i) { return i < FM_ISA_COUNT && fm_isa_supported((fm_isa)i) ? names[i] : NULL; }

static int active = -1;

int fm_isa_init(char *err, int cap)
{
    const char *want = getenv("FM_ISA");
    char list[128];
    if (want && *want) {
        const int i = fm_names_find(fm_isa_name, want);
        if (i < 0) {
            fm_errorf(err, cap, "FM_ISA = '%s': allowed: %s (or unset: the widest this CPU runs)", want,
                      fm_names_join(list, sizeof list, fm_isa_name, ", "));
            return -1;
        }
        if (!fm_isa_supported((fm_isa)i)) {
            fm_errorf(err, cap, "FM_ISA = '%s': this CPU cannot run it: allowed here: %s", want,
                      fm_names_join(list, sizeof list, supported_name, ", "));
            return -1;
        }
        active = i;
        return 0;
    }
    active = FM_ISA_BASELINE;
    while (supported_name(active + 1)) active++;
    return 0;
}

fm_isa fm_isa_active(void)
{
    if (active < 0) {
        char err[256];
        if (fm_isa_init(err, sizeof err)) FM_FATAL("%s", err);
    }
    return (fm_isa)active;
}

void fm_isa_set(fm_isa isa)
{
    FM_CHECK(fm_isa_supported(isa), "kernels '%s' are not supported here", fm_isa_name(isa) ? fm_isa_name(isa) : "?");
    active = (int)isa;
}

const fm_kern_ops *fm_isa_kern(void) { return kern[fm_isa_active()]; }
const fm_conv_direct_ops *fm_isa_conv(void) { return conv[fm_isa_active()]; }
const fm_coupling_ops *fm_isa_coupling(void) { return coupling[fm_isa_active()]; }
const fm_rng_ops *fm_isa_rng(void) { return rng[fm_isa_active()]; }
