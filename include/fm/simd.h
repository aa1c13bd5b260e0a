/* FM_CLONES: build a function for AVX-512, AVX2+FMA and baseline x86-64 and pick one at run time
 * (GCC's target_clones), so the hot loops use the node's widest vectors while one binary runs
 * on every node. Empty elsewhere and under AddressSanitizer. */
#ifndef FM_SIMD_H
#define FM_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define FM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FM_CLONES_ON 1
#else
#define FM_CLONES
#define FM_CLONES_ON 0
#endif

#endif
