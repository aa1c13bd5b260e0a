/* Stride-1 3 x 3 convolutions without im2col: each tile of R <= 16 output pixels of one image
 * row keeps R vectors of 16 output channels in registers, and every (input channel, tap) adds one
 * weight vector times R input pixels, read in place from a zero-bordered copy of the input. The
 * im2col copy and sgemm's packing of it (a fifth of the U-Net's time) are gone. */
#include "fm/conv.h"

#include <string.h>

#include "fm/kernels.h"
#include "fm/simd.h"

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias)); /* any alignment */

static int direct = -1; /* -1: where the machine has AVX-512 */

void fm_conv_set_direct(int on) { direct = on; }

static int enabled(void) { return direct >= 0 ? direct : strcmp(fm_kern_isa(), "x86-64-v4") == 0; }

int fm_conv_direct_few_ok(const fm_conv *c) { return enabled() && c->stride == 1 && c->cout < 16; }

int fm_conv_direct_ok(const fm_conv *c, int transposed)
{
    const int out = transposed ? c->cin : c->cout;
    const int on = enabled();
    /* fewer than 16 outputs would waste most of the vector; the transposed conv of stride 2 is not
     * a convolution of this kind */
    return on && (c->stride == 1 || !transposed) && out >= 16;
}

static int blocks16(int c) { return (c + 15) / 16; }

size_t fm_conv_packed_size(const fm_conv *c, int transposed)
{
    const int in = transposed ? c->cout : c->cin, out = transposed ? c->cin : c->cout;
    return (size_t)blocks16(out) * in * 9 * 16;
}

size_t fm_conv_pad_size(const fm_conv *c, int n, int transposed)
{
    const int in = transposed ? c->cout : c->cin;
    return (size_t)in * n * (c->h + 2) * (c->w + 2);
}

void fm_conv_pack(float *wp, const fm_conv *c, const float *W, int transposed)
{
    const int in = transposed ? c->cout : c->cin, out = transposed ? c->cin : c->cout;
    memset(wp, 0, sizeof(float) * fm_conv_packed_size(c, transposed));
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            for (int t = 0; t < 9; t++) {
                /* the transposed conv (an input gradient) is a conv with in and out swapped and
                 * the taps flipped */
                const float v = transposed ? W[((size_t)i * c->cin + o) * 9 + (8 - t)] : W[((size_t)o * c->cin + i) * 9 + t];
                wp[(((size_t)(o / 16) * in + i) * 9 + t) * 16 + o % 16] = v;
            }
}

/* R pixels of one row, 16 output channels (kout of them stored). x: the padded input at (channel
 * 0, this image, the row above the tile's, the column left of its first pixel); cstride: channel
 * stride of the padded input; wp2: its row length; y: the output at (channel co0, the tile's first
 * pixel); ystride: the output's channel stride. */
#define TILE(R, S)                                                                                                \
    FM_CLONES static void tile_##R##_##S(float *y, size_t ystride, int kout, const float *x, size_t cstride,      \
                                         int wp2, const float *wp, int cin, const float *bias)                    \
    {                                                                                                             \
        v16 acc[R];                                                                                               \
        v16 b0;                                                                                                   \
        memcpy(&b0, bias, sizeof b0);                                                                             \
        for (int r = 0; r < R; r++) acc[r] = b0;                                                                  \
        for (int ci = 0; ci < cin; ci++) {                                                                        \
            const float *xc = x + (size_t)ci * cstride;                                                           \
            const v16u *wc = (const v16u *)(wp + (size_t)ci * 144);                                               \
            for (int ky = 0; ky < 3; ky++)                                                                        \
                for (int kx = 0; kx < 3; kx++) {                                                                  \
                    const v16 wv = wc[ky * 3 + kx];                                                               \
                    const float *xt = xc + ky * wp2 + kx;                                                         \
                    _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) acc[r] += wv * xt[S * r];               \
                }                                                                                                 \
        }                                                                                                         \
        for (int k = 0; k < kout; k++)                                                                            \
            for (int r = 0; r < R; r++) y[(size_t)k * ystride + r] = acc[r][k];                                   \
    }

#define TILES(S) TILE(16, S) TILE(14, S) TILE(8, S) TILE(7, S) TILE(4, S) TILE(2, S) TILE(1, S)
TILES(1)
TILES(2)

typedef void (*tile_fn)(float *, size_t, int, const float *, size_t, int, const float *, int, const float *);
/* [stride - 1][k]: the tiles of R pixels for strides 1 and 2 */
#define TILE_ROW(S)                                                                                               \
    {{16, tile_16_##S}, {14, tile_14_##S}, {8, tile_8_##S}, {7, tile_7_##S}, {4, tile_4_##S}, {2, tile_2_##S},      \
     {1, tile_1_##S}}
static const struct { int r; tile_fn f; } tiles[2][7] = {TILE_ROW(1), TILE_ROW(2)};
#define NTILES 7

/* The tile for the rest of a row of `rem` pixels: the longest that divides it (a row of 28 is two
 * of 14), else the longest that fits. (28 vectors of accumulators would spill: 32 registers.) */
static int tile_for(int rem)
{
    for (int k = 0; k < NTILES; k++)
        if (rem % tiles[0][k].r == 0) return k;
    int k = 0;
    while (tiles[0][k].r > rem) k++;
    return k;
}

/* The zero-bordered copy of `in` x n planes of h x w. */
static void pad_input(float *xpad, const float *x, int in, int n, int h, int w)
{
    const int wp2 = w + 2;
    const size_t pplane = (size_t)(h + 2) * wp2, plane = (size_t)h * w;
    for (size_t q = 0; q < (size_t)in * n; q++) {
        float *d = xpad + q * pplane;
        const float *s = x + q * plane;
        memset(d, 0, sizeof(float) * wp2);
        for (int r = 0; r < h; r++) {
            float *dr = d + (size_t)(r + 1) * wp2;
            dr[0] = dr[w + 1] = 0.0f;
            memcpy(dr + 1, s + (size_t)r * w, sizeof(float) * w);
        }
        memset(d + (size_t)(h + 1) * wp2, 0, sizeof(float) * wp2);
    }
}

/* Fewer than 16 outputs (the final conv to the image's channels), stride 1: a weighted sum of
 * shifted rows per output channel, vectorised along the row (W as it is, [cout, cin, 3, 3]). */
FM_CLONES static void few_outputs(float *y, const float *xpad, const fm_conv *c, const float *W, const float *b, int n)
{
    const int h = c->h, w = c->w, wp2 = w + 2;
    const size_t pplane = (size_t)(h + 2) * wp2, plane = (size_t)h * w, cstride = (size_t)n * pplane;
    for (int o = 0; o < c->cout; o++)
        for (int i = 0; i < n; i++) {
            float *yi = y + ((size_t)o * n + i) * plane;
            for (size_t p = 0; p < plane; p++) yi[p] = b ? b[o] : 0.0f;
            for (int ci = 0; ci < c->cin; ci++) {
                const float *xc = xpad + (size_t)ci * cstride + (size_t)i * pplane;
                const float *wc = W + ((size_t)o * c->cin + ci) * 9;
                for (int oy = 0; oy < h; oy++) {
                    float *restrict yr = yi + (size_t)oy * w;
                    for (int t = 0; t < 9; t++) {
                        const float *restrict xr = xc + (size_t)(oy + t / 3) * wp2 + t % 3;
                        const float wt = wc[t];
                        for (int ox = 0; ox < w; ox++) yr[ox] += wt * xr[ox];
                    }
                }
            }
        }
}

void fm_conv_direct_few(float *y, float *xpad, const fm_conv *c, const float *x, const float *W, const float *b, int n)
{
    pad_input(xpad, x, c->cin, n, c->h, c->w);
    few_outputs(y, xpad, c, W, b, n);
}

void fm_conv_direct(float *y, float *xpad, const fm_conv *c, const float *x, const float *wp, const float *b, int n,
                    int transposed)
{
    const int in = transposed ? c->cout : c->cin, out = transposed ? c->cin : c->cout, s = c->stride;
    const int h = c->h, w = c->w, wp2 = w + 2, ho = c->ho, wo = c->wo;
    const size_t pplane = (size_t)(h + 2) * wp2, plane = (size_t)ho * wo;
    pad_input(xpad, x, in, n, h, w);
    const size_t cstride = (size_t)n * pplane, ystride = (size_t)n * plane;
    /* image by image, so that its input planes stay in cache while every block of outputs reads
     * them (a microbatch's planes at once went to memory: 1.8 times slower at 128 images) */
    for (int i = 0; i < n; i++)
        for (int cb = 0; cb < blocks16(out); cb++) {
            const int co0 = cb * 16, kout = out - co0 < 16 ? out - co0 : 16;
            float bias[16] = {0};
            if (b) memcpy(bias, b + co0, sizeof(float) * kout);
            const float *wb = wp + (size_t)cb * in * 144;
            for (int oy = 0; oy < ho; oy++) {
                const float *xr = xpad + (size_t)i * pplane + (size_t)oy * s * wp2;
                float *yr = y + (size_t)co0 * ystride + (size_t)i * plane + (size_t)oy * wo;
                for (int ox = 0; ox < wo;) {
                    const int k = tile_for(wo - ox);
                    tiles[s - 1][k].f(yr + ox, ystride, kout, xr + (size_t)ox * s, cstride, wp2, wb, in, bias);
                    ox += tiles[s - 1][k].r;
                }
            }
    }
}

size_t fm_conv_wgrad_size(const fm_conv *c, int n) { return (size_t)blocks16(c->cout) * 16 * n * c->h * c->w; }

/* dW for CI input channels at once, over one image: CI x 9 vectors of 16 output channels in
 * registers, one vector of dy per pixel (dyt: [h w, 16] of this block) times CI x 9 input pixels
 * (xpad: the image's bordered plane of the first channel). */
#define WGRAD(CI)                                                                                                 \
    FM_CLONES static void wgrad_##CI(float *acc_out /* [CI, 9, 16] */, const float *dyt, const float *xpad,       \
                                     size_t cstride, int h, int w)                                                 \
    {                                                                                                             \
        v16 acc[CI][9];                                                                                           \
        for (int q = 0; q < CI; q++)                                                                              \
            for (int t = 0; t < 9; t++) acc[q][t] = (v16){0};                                                     \
        const int wp2 = w + 2;                                                                                    \
        for (int oy = 0; oy < h; oy++) {                                                                          \
            const float *xr = xpad + (size_t)oy * wp2;                                                            \
            const v16u *d = (const v16u *)(dyt + (size_t)oy * w * 16);                                            \
            for (int ox = 0; ox < w; ox++) {                                                                      \
                const v16 dv = d[ox];                                                                             \
                _Pragma("GCC unroll 4") for (int q = 0; q < CI; q++) {                                           \
                    const float *xq = xr + q * cstride + ox;                                                      \
                    _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)                                        \
                        _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++)                                    \
                            acc[q][ky * 3 + kx] += dv * xq[ky * wp2 + kx];                                        \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
        memcpy(acc_out, acc, sizeof acc);                                                                         \
    }

WGRAD(2)
WGRAD(1)

void fm_conv_direct_wgrad(float *dW, float *db, float *dyt, float *xpad, const fm_conv *c, const float *x,
                          const float *dy, int n)
{
    const int h = c->h, w = c->w, cin = c->cin, cout = c->cout;
    const size_t hw = (size_t)h * w, npix = (size_t)n * hw;
    pad_input(xpad, x, cin, n, h, w);
    /* dy [cout, n, hw] -> [cout / 16, n hw, 16], and the bias gradient */
    if (cout % 16) memset(dyt, 0, sizeof(float) * fm_conv_wgrad_size(c, n)); /* the last block's unused lanes */
    for (int co = 0; co < cout; co++) {
        const float *src = dy + (size_t)co * npix;
        float *dst = dyt + (size_t)(co / 16) * npix * 16 + co % 16;
        float sum = 0.0f;
        for (size_t p = 0; p < npix; p++) {
            dst[p * 16] = src[p];
            sum += src[p];
        }
        db[co] += sum;
    }
    const size_t cstride = (size_t)n * (h + 2) * (w + 2), pplane = (size_t)(h + 2) * (w + 2);
    float acc[2 * 9 * 16];
    for (int i = 0; i < n; i++) /* image by image: its planes stay in cache */
        for (int cb = 0; cb < blocks16(cout); cb++) {
            const float *d = dyt + ((size_t)cb * npix + (size_t)i * hw) * 16;
            const int kout = cout - cb * 16 < 16 ? cout - cb * 16 : 16;
            for (int ci = 0; ci < cin;) {
                const int q = cin - ci >= 2 ? 2 : 1;
                const float *xi = xpad + (size_t)ci * cstride + (size_t)i * pplane;
                if (q == 2) wgrad_2(acc, d, xi, cstride, h, w);
                else wgrad_1(acc, d, xi, cstride, h, w);
                for (int a = 0; a < q; a++)
                    for (int t = 0; t < 9; t++)
                        for (int k = 0; k < kout; k++)
                            dW[((size_t)(cb * 16 + k) * cin + ci + a) * 9 + t] += acc[(a * 9 + t) * 16 + k];
                ci += q;
            }
        }
}
