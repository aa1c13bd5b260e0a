/* Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
 *
 * Every draw is a pure function of (seed, step, index, stream, j): the j-th number of sample
 * `index` at training step `step` in stream `stream`. No state is carried, so any rank can draw
 * any sample's numbers, and a run draws the same global batch whatever the number of ranks. */
#ifndef FM_RNG_H
#define FM_RNG_H

#include <stdint.h>

/* Streams: one per kind of draw, so that adding a draw of one kind never shifts another. */
enum {
    FM_STREAM_T = 0,      /* training time t ~ U[0,1) */
    FM_STREAM_X0 = 1,     /* training source sample */
    FM_STREAM_Z = 2,      /* training target sample */
    FM_STREAM_INIT = 3,   /* parameter initialisation, index = layer */
    FM_STREAM_SAMPLE = 4, /* sampler x0, index = trajectory */
    FM_STREAM_MEANS = 5,  /* random mixture means */
    FM_STREAM_EVAL = 6,   /* fresh draws for evaluation tools */
    FM_STREAM_COND = 7,   /* training label dropout (classifier-free guidance) */
    FM_STREAM_VAL_T = 8,  /* validation t, index = held-out row (the same at every evaluation) */
    FM_STREAM_VAL_X0 = 9, /* validation x0, likewise */
};

/* The raw block function: out = Philox4x32-10(ctr, key). */
void fm_rng_philox(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* n uniforms in [0,1) (24-bit resolution, never 1). */
void fm_rng_uniform(float *out /* [n] */, uint64_t seed, uint32_t step, uint32_t index,
                    uint32_t stream, int n);

/* n standard normals (Box-Muller in float: relative error about 1e-7, tails to 6.8 sd). */
void fm_rng_normal(float *out /* [n] */, uint64_t seed, uint32_t step, uint32_t index,
                   uint32_t stream, int n);

/* The same draws for n consecutive indices at once, vectorised over them: out[i] is
 * fm_rng_uniform(.., index0 + i, .., 1), and row i of out is fm_rng_normal(.., index0 + i, .., D),
 * bit for bit. */
void fm_rng_uniform_rows(float *out /* [n] */, uint64_t seed, uint32_t step, uint32_t index0,
                         uint32_t stream, int n);
void fm_rng_normal_rows(float *out /* [n, D] */, uint64_t seed, uint32_t step, uint32_t index0,
                        uint32_t stream, int n, int D);

#endif
