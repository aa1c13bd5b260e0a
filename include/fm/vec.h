/* The vector width of the build that includes this: the kernel files (src/kernels.c,
 * src/conv_direct.c, src/coupling_kern.c) are compiled once per instruction set (CMake's
 * FM_ISA_LIST), and their loops are written once over a vector of FM_VW floats in FM_VREGS
 * registers. Each tile's size is an expression of those two numbers, so no build spills its
 * accumulators or splits its vectors:
 *   AVX-512 (x86-64-v4): 16 floats, 32 registers
 *   AVX2 + FMA (x86-64-v3): 8 floats, 16 registers
 *   SSE2 (x86-64 baseline): 4 floats, 16 registers; NEON (aarch64): 4 floats, 32 registers.
 * GCC's vector extensions carry the arithmetic; a multiply then add contracts to FMA where the
 * ISA has it (-ffp-contract=fast on these files). */
#ifndef FM_VEC_H
#define FM_VEC_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define FM_VW 16
#define FM_VREGS 32
#elif defined(__AVX2__)
#define FM_VW 8
#define FM_VREGS 16
#elif defined(__aarch64__)
#define FM_VW 4
#define FM_VREGS 32
#else
#define FM_VW 4
#define FM_VREGS 16
#endif

typedef float vf __attribute__((vector_size(4 * FM_VW)));
typedef float vfu __attribute__((vector_size(4 * FM_VW), aligned(4), may_alias)); /* any alignment */
typedef int32_t vi __attribute__((vector_size(4 * FM_VW)));
/* The same bytes as FM_VW / 2 doubles or 64-bit integers. */
#define FM_VD (FM_VW / 2)
typedef double vd __attribute__((vector_size(4 * FM_VW)));
typedef double vdu __attribute__((vector_size(4 * FM_VW), aligned(8), may_alias));
typedef int64_t vl __attribute__((vector_size(4 * FM_VW)));
typedef int64_t vlu __attribute__((vector_size(4 * FM_VW), aligned(8), may_alias));

#define FM_INLINE static inline __attribute__((always_inline))

FM_INLINE vf vf_load(const float *p) { return *(const vfu *)p; }
FM_INLINE void vf_store(float *p, vf v) { *(vfu *)p = v; }
FM_INLINE vf vf_set1(float x) { return (vf){0} + x; }
FM_INLINE vd vd_load(const double *p) { return *(const vdu *)p; }
FM_INLINE void vd_store(double *p, vd v) { *(vdu *)p = v; }
FM_INLINE vl vl_load(const int64_t *p) { return *(const vlu *)p; }
FM_INLINE void vl_store(int64_t *p, vl v) { *(vlu *)p = v; }

/* a < b ? a : b lane by lane (the min instruction where there is one: its result on equal lanes
 * or NaN is b, which the blend gives too), and a store of v's lanes where mask is set, the other
 * lanes of p untouched (a masked store, or a load and a blend). */
#if defined(__AVX512F__)
#include <immintrin.h>
FM_INLINE vd vd_min(vd a, vd b) { return (vd)_mm512_min_pd((__m512d)a, (__m512d)b); }
FM_INLINE void vl_store_where(int64_t *p, vl mask, vl v)
{
    _mm512_mask_storeu_epi64(p, _mm512_movepi64_mask((__m512i)mask), (__m512i)v);
}
#elif defined(__AVX2__)
#include <immintrin.h>
FM_INLINE vd vd_min(vd a, vd b) { return (vd)_mm256_min_pd((__m256d)a, (__m256d)b); }
FM_INLINE void vl_store_where(int64_t *p, vl mask, vl v)
{
    _mm256_maskstore_epi64((long long *)p, (__m256i)mask, (__m256i)v);
}
#else
FM_INLINE vd vd_min(vd a, vd b)
{
    const vl m = a < b;
    return (vd)(((vl)a & m) | ((vl)b & ~m));
}
FM_INLINE void vl_store_where(int64_t *p, vl mask, vl v) { vl_store(p, (v & mask) | (vl_load(p) & ~mask)); }
#endif

/* Each kernel file ends with its table of entry points, named by the build's instruction set
 * (FM_ISA_ID, set by CMake): FM_ISA_TABLE(fm_kern_ops) = {...} defines fm_kern_ops_avx2 in the
 * AVX2 build. src/isa.c picks one table of each kind at run time. */
#define FM_ISA_CAT2(a, b) a##_##b
#define FM_ISA_CAT(a, b) FM_ISA_CAT2(a, b)
#define FM_ISA_TABLE(type) const type FM_ISA_CAT(type, FM_ISA_ID)

#endif
