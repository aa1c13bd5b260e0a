/* Targets that are isotropic Gaussian mixtures (fm/dist.h): the seed's ring, random means, and a
 * single Gaussian. The checkpoint keeps their means and std under /data. */
#ifndef FM_TARGET_MIXTURE_H
#define FM_TARGET_MIXTURE_H

#include "fm/target.h"

extern const fm_target_ops fm_target_gmm_ring_ops, fm_target_gmm_random_ops, fm_target_gaussian_ops;

#endif
