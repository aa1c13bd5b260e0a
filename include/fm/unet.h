/* The U-Net vector field (model.type = unet), DESIGN.md section 6: MIT 6.S184 lab 3's MNIST U-Net
 * with GroupNorm instead of BatchNorm, on images [C, H, W] (data.shape), conditioned on a Fourier
 * time embedding and, with model.classes, a label embedding. Its tensors carry the names of a
 * PyTorch module's state_dict with '/' for '.' (init/weight, enc/0/1/c1/bias, ...). It runs on
 * microbatches in the channel-major layout of fm/conv.h; rows in and out are PyTorch's
 * [n, C, H, W]. */
#ifndef FM_UNET_H
#define FM_UNET_H

#include "fm/model.h"

extern const fm_model_ops fm_unet_ops;

#endif
