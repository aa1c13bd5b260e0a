#include "fm/epoch.h"

/* splitmix64's finaliser: a bijective mixer of 64 bits (Stafford's variant 13). */
static inline uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void fm_epoch_init(fm_epoch *e, uint64_t n, uint64_t seed, uint64_t epoch)
{
    int bits = 2;
    while (bits < 62 && (1ull << bits) < n) bits++;
    e->n = n;
    e->epoch = epoch;
    e->hi_bits = (bits + 1) / 2;
    e->lo_bits = bits / 2;
    const uint64_t base = mix(mix(seed ^ 0x6A09E667F3BCC909ull) + epoch);
    for (int k = 0; k < FM_EPOCH_ROUNDS; k++) e->key[k] = mix(base + 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1));
}

uint64_t fm_epoch_apply(const fm_epoch *e, uint64_t i)
{
    /* An alternating Feistel network on hi_bits + lo_bits bits: each round keeps one half and
     * adds a keyed mix of it to the other (the halves' widths swap each round; an even number of
     * rounds brings them back), so it is a bijection of [0, 2^bits). Cycle-walking (apply it
     * again until the value falls inside [0, n)) makes it one of [0, n): the walk from i never
     * meets another i' < n. The domain is less than 2n: under 2 passes on average. */
    uint64_t x = i;
    do {
        int wl = e->hi_bits, wr = e->lo_bits;
        uint64_t l = x >> wr, r = x & ((1ull << wr) - 1);
        for (int k = 0; k < FM_EPOCH_ROUNDS; k++) {
            const uint64_t t = (l ^ mix(r ^ e->key[k])) & ((1ull << wl) - 1);
            l = r;
            r = t;
            const int w = wl;
            wl = wr;
            wr = w;
        }
        x = (l << wr) | r;
    } while (x >= e->n);
    return x;
}

uint64_t fm_epoch_perm(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch)
{
    fm_epoch e;
    fm_epoch_init(&e, n, seed, epoch);
    return fm_epoch_apply(&e, i);
}
