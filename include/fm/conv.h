/* The U-Net's layers (DESIGN.md section 6), forward and backward, on a microbatch of n images
 * held channel-major, [c, n, h, w] (CNHW: channel c's planes of all n images side by side), so
 * that a convolution is one wide product per pass whatever the image size: a 3 x 3 convolution
 * with padding 1, stride 1 or 2, through cblas_sgemm over an im2col buffer of a few images at a
 * time; GroupNorm (per image); nearest-neighbour upsampling by 2. Weights as PyTorch's,
 * [out, in, kh, kw] row-major. For one image CNHW is PyTorch's CHW. */
#ifndef FM_CONV_H
#define FM_CONV_H

#include <stddef.h>

typedef struct {
    int cin, cout, h, w, stride; /* input [cin, n, h, w]; output [cout, n, ho, wo] */
    int ho, wo;                  /* (h + 2 - 3) / stride + 1 */
} fm_conv;

/* Fills ho, wo; 0, or -1 for a shape it cannot take (sizes < 1, stride not 1 or 2). */
int fm_conv_shape(fm_conv *c, int cin, int cout, int h, int w, int stride);
/* Images per im2col pass for a microbatch of n (the buffer stays near 1 MB). */
int fm_conv_chunk(const fm_conv *c, int n);
/* Floats of the im2col buffer for microbatches of up to n: [cin * 9, chunk * ho * wo]. */
size_t fm_conv_cols(const fm_conv *c, int n);

/* y = W * x + b (b NULL: no bias). cols: scratch of fm_conv_cols(c, n) floats. */
void fm_conv_forward(float *y /* [cout, n, ho, wo] */, float *cols, const fm_conv *c, const float *x /* [cin, n, h, w] */,
                     const float *W /* [cout, cin, 3, 3] */, const float *b /* [cout] */, int n);

/* From dy: dW += dy (x)^T, db += sums of dy (when dW is not NULL), and dx = W^T dy (when dx is not
 * NULL: overwritten).
 * cols: scratch as above (the forward's im2col is made again). */
void fm_conv_backward(float *dW /* [cout, cin, 3, 3] */, float *db /* [cout] */, float *dx /* [cin, n, h, w] */,
                      float *cols, const fm_conv *c, const float *x /* [cin, n, h, w] */, const float *W,
                      const float *dy /* [cout, n, ho, wo] */, int n);

/* Without im2col (src/conv_direct.c): a direct kernel over weights packed by output channel
 * blocks of 16. transposed = 1: the convolution whose output is the input gradient of c (dx =
 * W^T dy: in and out swapped, taps flipped; stride 1 only). Used where fm_conv_direct_ok says so:
 * at least 16 outputs and (unless fm_conv_set_direct overrides: tests) kernels of AVX2 or wider
 * (include/fm/isa.h), whose registers hold a tile of 6 (AVX2) or 16 (AVX-512) pixels. */
int fm_conv_direct_ok(const fm_conv *c, int transposed);
void fm_conv_set_direct(int on); /* 1 always, 0 never, -1 by the machine */
size_t fm_conv_packed_size(const fm_conv *c, int transposed); /* floats */
void fm_conv_pack(float *wp /* [out / 16, in, 9, 16] */, const fm_conv *c, const float *W /* [cout, cin, 3, 3] */,
                  int transposed);
size_t fm_conv_pad_size(const fm_conv *c, int n, int transposed); /* floats of the bordered input */
/* y = conv(x) + b (b may be NULL): x [in, n, h, w] -> y [out, n, ho, wo]; xpad: scratch of
 * fm_conv_pad_size floats. */
void fm_conv_direct(float *y, float *xpad, const fm_conv *c, const float *x, const float *wp, const float *b, int n,
                    int transposed);

/* The same for fewer than 16 outputs and stride 1 (the final conv to an image's channels), on
 * the weights as they are: y [cout, n, h, w]; where fm_conv_direct_few_ok says so. Its
 * gradients go through im2col. */
int fm_conv_direct_few_ok(const fm_conv *c);
void fm_conv_direct_few(float *y, float *xpad, const fm_conv *c, const float *x, const float *W /* [cout, cin, 3, 3] */,
                        const float *b, int n);

/* The weight and bias gradients of c by a direct kernel too (stride 1): dW += dy (x)^T and db +=
 * sums of dy. dyt: scratch of fm_conv_wgrad_size floats; xpad: of fm_conv_pad_size(c, n, 0). */
size_t fm_conv_wgrad_size(const fm_conv *c, int n);
void fm_conv_direct_wgrad(float *dW /* [cout, cin, 3, 3] */, float *db /* [cout] */, float *dyt, float *xpad,
                          const fm_conv *c, const float *x /* [cin, n, h, w] */, const float *dy /* [cout, n, h, w] */,
                          int n);

/* GroupNorm of each image: its c channels in g groups of c / g; y = gamma xhat + beta with xhat
 * the group-normalised x (biased variance, eps inside the root). mean, rstd kept for the
 * backward; sums: scratch of 2 c n doubles. */
void fm_groupnorm_forward(float *y /* [c, n, hw] */, float *mean /* [n, g] */, float *rstd /* [n, g] */, double *sums,
                          const float *x /* [c, n, hw] */, const float *gamma /* [c] */, const float *beta /* [c] */,
                          int c, int n, int hw, int g, float eps);

/* The same from the sums of x and of x^2 over each plane, made by the caller (e.g. in the pass
 * that wrote x: fm_kern_silu_sums). */
void fm_groupnorm_apply(float *y /* [c, n, hw] */, float *mean /* [n, g] */, float *rstd /* [n, g] */,
                        const float *x /* [c, n, hw] */, const double *sum /* [c, n] */, const double *sumsq /* [c, n] */,
                        const float *gamma /* [c] */, const float *beta /* [c] */, int c, int n, int hw, int g,
                        float eps);

/* dgamma, dbeta += their gradients; dx = the input's (overwritten). */
void fm_groupnorm_backward(float *dx /* [c, n, hw] */, float *dgamma /* [c] */, float *dbeta /* [c] */,
                           const float *dy /* [c, n, hw] */, const float *x /* [c, n, hw] */, const float *gamma /* [c] */,
                           const float *mean /* [n, g] */, const float *rstd /* [n, g] */, int c, int n, int hw, int g);

/* Nearest-neighbour upsampling by 2 of `planes` planes of h x w, and its adjoint (dx = the sum of
 * each 2 x 2 block of dy, overwritten). */
void fm_upsample2_forward(float *y /* [planes, 2h, 2w] */, const float *x /* [planes, h, w] */, int planes, int h, int w);
void fm_upsample2_backward(float *dx /* [planes, h, w] */, const float *dy /* [planes, 2h, 2w] */, int planes, int h, int w);

#endif
