/* The U-Net's layers (DESIGN.md section 6), forward and backward, one image at a time in the
 * layout of PyTorch (CHW rows, weights [out, in, kh, kw]): a 3 x 3 convolution with padding 1,
 * stride 1 or 2, through cblas_sgemm over an im2col buffer; GroupNorm. */
#ifndef FM_CONV_H
#define FM_CONV_H

#include <stddef.h>

typedef struct {
    int cin, cout, h, w, stride; /* input [cin, h, w]; output [cout, ho, wo] */
    int ho, wo;                  /* (h + 2 - 3) / stride + 1 */
} fm_conv;

/* Fills ho, wo; 0, or -1 for a shape it cannot take (sizes < 1, stride not 1 or 2). */
int fm_conv_shape(fm_conv *c, int cin, int cout, int h, int w, int stride);
/* Floats of the im2col buffer: [cin * 9, ho * wo]. */
size_t fm_conv_cols(const fm_conv *c);

/* y[cout, ho, wo] = W * x + b. cols: scratch of fm_conv_cols floats. */
void fm_conv_forward(float *y, float *cols, const fm_conv *c, const float *x /* [cin, h, w] */,
                     const float *W /* [cout, cin, 3, 3] */, const float *b /* [cout] */);

/* From dy [cout, ho, wo]: dW += dy (x)^T, db += sums of dy, and dx = W^T dy (when dx is not NULL:
 * overwritten). cols: scratch as above (the forward's im2col is made again). */
void fm_conv_backward(float *dW /* [cout, cin, 3, 3] */, float *db /* [cout] */, float *dx /* [cin, h, w] */,
                      float *cols, const fm_conv *c, const float *x, const float *W, const float *dy);

/* GroupNorm over one image: channels [c, hw] in g groups of c / g channels; y = gamma xhat + beta
 * with xhat the group-normalised x (biased variance, eps inside the root). mean, rstd [g] kept
 * for the backward. */
void fm_groupnorm_forward(float *y /* [c, hw] */, float *mean /* [g] */, float *rstd /* [g] */,
                          const float *x /* [c, hw] */, const float *gamma /* [c] */, const float *beta /* [c] */,
                          int c, int hw, int g, float eps);

/* dgamma, dbeta += their gradients; dx = the input's (overwritten). */
void fm_groupnorm_backward(float *dx /* [c, hw] */, float *dgamma /* [c] */, float *dbeta /* [c] */,
                           const float *dy /* [c, hw] */, const float *x /* [c, hw] */, const float *gamma /* [c] */,
                           const float *mean /* [g] */, const float *rstd /* [g] */, int c, int hw, int g);

#endif
