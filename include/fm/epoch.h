/* Epochs that do not depend on the number of ranks (DESIGN.md section 5): global sample g of a
 * run (g = (step - 1) B + i) is row perm_e(g mod N) of epoch e = g div N, where perm_e is a
 * pseudorandom bijection of [0, N), a pure function of (seed, e): a keyed Feistel network on the
 * next power of two, cycle-walked into [0, N). No O(N) array; every row exactly once per epoch;
 * any rank computes any sample's row. */
#ifndef FM_EPOCH_H
#define FM_EPOCH_H

#include <stdint.h>

#define FM_EPOCH_ROUNDS 6

/* One epoch's permutation: its round keys, made once. */
typedef struct {
    uint64_t n, epoch;
    int hi_bits, lo_bits; /* the two halves of the Feistel network: next power of two >= n */
    uint64_t key[FM_EPOCH_ROUNDS];
} fm_epoch;

void fm_epoch_init(fm_epoch *e, uint64_t n, uint64_t seed, uint64_t epoch);
/* perm_e(i) for i < n. */
uint64_t fm_epoch_apply(const fm_epoch *e, uint64_t i);

/* The same in one call (the keys made each time). */
uint64_t fm_epoch_perm(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch);

/* The row of global sample g: perm_{g / n}(g mod n). */
static inline uint64_t fm_epoch_row(uint64_t g, uint64_t n, uint64_t seed)
{
    return fm_epoch_perm(g % n, n, seed, g / n);
}

#endif
