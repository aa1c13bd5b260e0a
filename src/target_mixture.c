#include "fm/target_mixture.h"

#include <stdlib.h>
#include <string.h>

#include "fm/dist.h"
#include "fm/error.h"
#include "fm/rng.h"

/* The mixture, and the checkpoint's copy of its parameters: [means..., std]. */
typedef struct {
    fm_dist *dist;
    float *values; /* [nmodes * dim + 1] */
} mixture;

static int mixture_wrap(fm_target *t, fm_dist *d)
{
    mixture *mx = fm_calloc(sizeof *mx);
    const size_t nm = (size_t)d->nmodes * d->dim;
    mx->dist = d;
    mx->values = fm_malloc(sizeof(float) * (nm + 1));
    memcpy(mx->values, d->means, sizeof(float) * nm);
    mx->values[nm] = d->std;
    t->impl = mx;
    t->dim = d->dim;
    t->classes = 0;
    t->values = mx->values;
    t->narrays = 2;
    t->arrays[0] = (fm_tensor){"target_means", 2, {(uint64_t)d->nmodes, (uint64_t)d->dim}, 0, nm};
    t->arrays[1] = (fm_tensor){"target_std", 0, {0}, nm, 1};
    return 0;
}

static void mixture_free(void *impl)
{
    mixture *mx = impl;
    fm_dist_free(mx->dist);
    free(mx->values);
    free(mx);
}

static void mixture_draw(float *z, int *y, const fm_target *t, uint64_t seed, uint32_t step, uint32_t index0, int n)
{
    (void)y;
    fm_dist_sample(z, ((const mixture *)t->impl)->dist, seed, step, index0, FM_STREAM_Z, n);
}

static int ring_build(fm_target *t, const fm_config *c, char *err, int cap)
{
    if (c->dim != 2) {
        fm_errorf(err, cap, "[data] dim = %ld with target = gmm_ring: allowed: dim = 2 (the ring is 2-D)", c->dim);
        return -1;
    }
    return mixture_wrap(t, fm_dist_gmm_ring((int)c->modes, (float)c->radius, (float)c->std, (float)c->x_offset));
}

static int random_build(fm_target *t, const fm_config *c, char *err, int cap)
{
    (void)err, (void)cap;
    return mixture_wrap(t, fm_dist_gmm_random((int)c->dim, (int)c->modes, (float)c->scale, (float)c->std,
                                              (uint64_t)c->mean_seed));
}

static int gaussian_build(fm_target *t, const fm_config *c, char *err, int cap)
{
    (void)err, (void)cap;
    return mixture_wrap(t, fm_dist_gaussian((int)c->dim, (float)c->std));
}

/* The means twice (the distribution's and the checkpoint's copy) and the mode weights. */
static uint64_t mixture_bytes(const fm_config *c) { return (uint64_t)c->modes * ((uint64_t)c->dim * 8 + 8) + 64; }
static uint64_t gaussian_bytes(const fm_config *c) { return (uint64_t)c->dim * 8 + 64; }

const fm_target_ops fm_target_gmm_ring_ops = {"gmm_ring", 0, ring_build, mixture_free, mixture_draw, mixture_bytes};
const fm_target_ops fm_target_gmm_random_ops = {"gmm_random", 0, random_build, mixture_free, mixture_draw, mixture_bytes};
const fm_target_ops fm_target_gaussian_ops = {"gaussian", 0, gaussian_build, mixture_free, mixture_draw, gaussian_bytes};
