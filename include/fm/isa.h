/* Which build of the kernels runs: the kernel files are compiled once per instruction set
 * (include/fm/vec.h) and one build is chosen when a kernel first runs. By default the widest
 * this CPU runs; the environment variable FM_ISA forces another (tests and benchmarks run the
 * AVX2 kernels on an AVX-512 machine this way). Results are bit-identical between machines that
 * run the same build, and agree to float rounding between builds. */
#ifndef FM_ISA_H
#define FM_ISA_H

typedef enum {
    FM_ISA_BASELINE, /* "baseline": x86-64 with SSE2, or the only build elsewhere (aarch64: NEON) */
    FM_ISA_AVX2,     /* "x86-64-v3": AVX2 and FMA, 16 registers of 8 floats */
    FM_ISA_AVX512,   /* "x86-64-v4": AVX-512, 32 registers of 16 floats */
    FM_ISA_COUNT
} fm_isa;

/* The builds' names, in fm_isa's order; NULL past the end (an fm_names list). */
const char *fm_isa_name(int isa);

/* 1 when this binary has the build and this CPU can run it. */
int fm_isa_supported(fm_isa isa);

/* Reads FM_ISA and chooses the build: 0, or -1 with one line in err when the value is not a
 * name or names a build this CPU cannot run (the program says it and stops before any work). */
int fm_isa_init(char *err, int cap);

/* The build in use. Its first call reads FM_ISA ("baseline", "x86-64-v3", "x86-64-v4" or
 * unset: the widest supported) and ends the program with one line if the value is not a name or
 * names a build this CPU cannot run. */
fm_isa fm_isa_active(void);

/* For tests: use this build from now on (FM_FATAL when not supported). */
void fm_isa_set(fm_isa isa);

#endif
