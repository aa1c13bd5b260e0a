#include "fm/epoch.h"

#include "fm/rng.h"

#define ROUNDS 6 /* Luby-Rackoff: 4 make a pseudorandom permutation; 6 for margin */

/* The round function: the low `bits` bits of a Philox block keyed by the seed, its counter the
 * half, the round and the epoch (a stream of its own, so it never shares counters with draws). */
static uint32_t round_fn(uint32_t half, int round, uint64_t seed, uint64_t epoch, int bits)
{
    const uint32_t ctr[4] = {half, (uint32_t)round, (uint32_t)epoch, (uint32_t)(epoch >> 32) ^ FM_STREAM_EPOCH << 24};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    fm_rng_philox(out, ctr, key);
    return out[0] & ((1u << bits) - 1u);
}

/* One pass of the balanced Feistel network on 2 * half_bits bits: a bijection of [0, 4^half_bits). */
static uint64_t feistel(uint64_t x, int half_bits, uint64_t seed, uint64_t epoch)
{
    const uint32_t mask = (1u << half_bits) - 1u;
    uint32_t l = (uint32_t)(x >> half_bits) & mask, r = (uint32_t)x & mask;
    for (int k = 0; k < ROUNDS; k++) {
        const uint32_t t = l ^ round_fn(r, k, seed, epoch, half_bits);
        l = r;
        r = t;
    }
    return ((uint64_t)l << half_bits) | r;
}

uint64_t fm_epoch_perm(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch)
{
    int half_bits = 1;
    while (half_bits < 31 && (1ull << (2 * half_bits)) < n) half_bits++;
    /* Cycle-walking: apply the bijection of the larger domain until the value falls inside
     * [0, n). It is a bijection of [0, n) because the walk from i never meets another i' < n. The
     * domain is less than 4n, so about 4 passes at most on average. */
    uint64_t x = i;
    do x = feistel(x, half_bits, seed, epoch);
    while (x >= n);
    return x;
}
