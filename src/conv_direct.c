/* Stride-1 and stride-2 3 x 3 convolutions without im2col, compiled once per instruction set
 * (include/fm/vec.h): each tile of R output pixels keeps R x NV vectors of 16
 * output channels in registers, and every (input channel, tap) adds NV weight vectors times R
 * input pixels, read in place from a zero-bordered copy of the input. The im2col copy and
 * sgemm's packing of it (a fifth of the U-Net's time) are gone. src/conv_direct_api.c holds the
 * packing and the choice of path, and calls the active build's table. */
#include <string.h>

#include "fm/conv.h"
#include "fm/kern_ops.h"
#include "fm/vec.h"

#define NV (16 / FM_VW) /* vectors of a block of 16 output channels */

/* The longest tile: R x NV accumulators, NV weights and the broadcast input in the registers
 * (AVX-512: 16 of 32, measured best; AVX2: 6, 2 x 6 + 3 = 15 of 16; SSE2: 2; NEON: 6). */
#if FM_VREGS >= 32 && NV == 1
#define TILE_MAX 16
#else
#define TILE_MAX ((FM_VREGS - 1 - NV) / NV > 16 ? 16 : (FM_VREGS - 1 - NV) / NV)
#endif

/* Tiles of R consecutive pixels of the output image in raster order, each pixel's input found by
 * its own pointer, where the longest tile is short (AVX2: 6; SSE2: 2): a 7 x 7 image then takes
 * 4 tiles of 6 and 5 of 5, where a row at a time took 4 + 3 in every row. With AVX-512 (16) a row
 * at a time, one pointer and constant offsets: 16 pointers do not fit in the integer registers,
 * and rows of 28, 14 and 7 split well (14 + 14, 14, 7). */
#define RASTER (TILE_MAX <= 8)

/* R output pixels, 16 output channels (kout of them stored). Pixel r's input (channel 0, the row
 * above its own, the column left of it, in the padded input) is x + S r (a tile in one row), or
 * q[r] (RASTER); cstride: channel stride of the padded input; wp2: its row length; y: the output
 * at (channel co0, the tile's first pixel), whose R pixels are consecutive; ystride: the output's
 * channel stride. */
FM_INLINE void tile(float *y, size_t ystride, int kout, const float *x, const float *const *q, size_t cstride,
                    int wp2, const float *wp, int cin, const float *bias, const int R, const int S)
{
    vf acc[16][NV]; /* R <= TILE_MAX of them are used */
    const float *xr[16];
    for (int r = 0; r < R; r++) {
        xr[r] = RASTER ? q[r] : x + S * r;
        for (int v = 0; v < NV; v++) acc[r][v] = vf_load(bias + v * FM_VW);
    }
    for (int ci = 0; ci < cin; ci++) {
        const size_t xc = (size_t)ci * cstride;
        const float *wc = wp + (size_t)ci * 144;
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                vf wv[NV];
                for (int v = 0; v < NV; v++) wv[v] = vf_load(wc + (ky * 3 + kx) * 16 + v * FM_VW);
                const size_t o = xc + (size_t)(ky * wp2 + kx);
                _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {
                    const float xv = xr[r][o];
                    for (int v = 0; v < NV; v++) acc[r][v] += wv[v] * xv;
                }
            }
    }
    for (int k = 0; k < kout; k++)
        for (int r = 0; r < R; r++) y[(size_t)k * ystride + r] = acc[r][k / FM_VW][k % FM_VW];
}

typedef void (*tile_fn)(float *, size_t, int, const float *, const float *const *, size_t, int, const float *, int,
                        const float *);
#define TILE(R, S)                                                                                               \
    static void tile_##R##_##S(float *y, size_t ys, int kout, const float *x, const float *const *q, size_t cs, \
                               int wp2, const float *wp, int cin, const float *bias)                            \
    {                                                                                                           \
        tile(y, ys, kout, x, q, cs, wp2, wp, cin, bias, R, S);                                                  \
    }
#define TILES(S)                                                                                                  \
    TILE(1, S) TILE(2, S) TILE(3, S) TILE(4, S) TILE(5, S) TILE(6, S) TILE(7, S) TILE(8, S) TILE(9, S) TILE(10, S) \
        TILE(11, S) TILE(12, S) TILE(13, S) TILE(14, S) TILE(15, S) TILE(16, S)
TILES(1)
TILES(2)
/* [stride - 1][R - 1]: the tile of R pixels (those past TILE_MAX are never called) */
#define TILE_ROW(S)                                                                                                \
    {tile_1_##S, tile_2_##S, tile_3_##S, tile_4_##S, tile_5_##S, tile_6_##S, tile_7_##S, tile_8_##S, tile_9_##S,    \
     tile_10_##S, tile_11_##S, tile_12_##S, tile_13_##S, tile_14_##S, tile_15_##S, tile_16_##S}
static const tile_fn tiles[2][16] = {TILE_ROW(1), TILE_ROW(2)};

/* The tile for the rest of a row (or, RASTER, of an image) of `rem` pixels: as few tiles as the
 * longest allows, of sizes as equal as may be (a row of 28 is two of 14 on AVX-512; an image of
 * 7 x 7 is 4 x 6 + 5 x 5 on AVX2). */
static int tile_for(int rem)
{
    const int m = (rem + TILE_MAX - 1) / TILE_MAX;
    return (rem + m - 1) / m;
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
static void few(float *y, float *xpad, const fm_conv *c, const float *x, const float *W, const float *b, int n)
{
    pad_input(xpad, x, c->cin, n, c->h, c->w);
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

static void forward(float *y, float *xpad, const fm_conv *c, const float *x, const float *wp, const float *b, int n,
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
        for (int co0 = 0; co0 < out; co0 += 16) {
            const int kout = out - co0 < 16 ? out - co0 : 16;
            float bias[16] = {0};
            if (b) memcpy(bias, b + co0, sizeof(float) * kout);
            const float *wb = wp + (size_t)(co0 / 16) * in * 144;
            const float *xi = xpad + (size_t)i * pplane;
            float *yi = y + (size_t)co0 * ystride + (size_t)i * plane;
            if (RASTER) {
                for (int p = 0; p < (int)plane;) {
                    const int r = tile_for((int)plane - p);
                    const float *q[16];
                    for (int k = 0; k < r; k++)
                        q[k] = xi + (size_t)((p + k) / wo) * s * wp2 + (size_t)((p + k) % wo) * s;
                    tiles[s - 1][r - 1](yi + p, ystride, kout, NULL, q, cstride, wp2, wb, in, bias);
                    p += r;
                }
            } else {
                for (int oy = 0; oy < ho; oy++) {
                    const float *xr = xi + (size_t)oy * s * wp2;
                    float *yr = yi + (size_t)oy * wo;
                    for (int ox = 0; ox < wo;) {
                        const int r = tile_for(wo - ox);
                        tiles[s - 1][r - 1](yr + ox, ystride, kout, xr + (size_t)ox * s, NULL, cstride, wp2, wb, in,
                                            bias);
                        ox += r;
                    }
                }
            }
        }
}

/* Input channels one weight-gradient tile holds: CI x 9 vectors of accumulators, the output
 * gradient's vector and a broadcast input (AVX-512: 2 x 9 + 2 of 32; 16 registers: 1 x 9 + 2). */
#define WGRAD_CI (FM_VREGS >= 32 ? 2 : 1)

/* dW for CI input channels at once, over one image, for the FM_VW output channels of dyt's lanes
 * [v FM_VW, (v + 1) FM_VW): one vector of dy per pixel (dyt: [h w, 16] of this block) times
 * CI x 9 input pixels (xpad: the image's bordered plane of the first channel). */
FM_INLINE void wgrad_tile(float *acc_out /* [CI, 9, FM_VW] */, const float *dyt, const float *xpad, size_t cstride,
                          int h, int w, const int CI)
{
    vf acc[WGRAD_CI][9];
    for (int q = 0; q < CI; q++)
        for (int t = 0; t < 9; t++) acc[q][t] = (vf){0};
    const int wp2 = w + 2;
    for (int oy = 0; oy < h; oy++) {
        const float *xr = xpad + (size_t)oy * wp2, *d = dyt + (size_t)oy * w * 16;
        for (int ox = 0; ox < w; ox++) {
            const vf dv = vf_load(d + (size_t)ox * 16);
            _Pragma("GCC unroll 4") for (int q = 0; q < CI; q++) {
                const float *xq = xr + q * cstride + ox;
                _Pragma("GCC unroll 3") for (int ky = 0; ky < 3; ky++)
                    _Pragma("GCC unroll 3") for (int kx = 0; kx < 3; kx++)
                        acc[q][ky * 3 + kx] += dv * xq[ky * wp2 + kx];
            }
        }
    }
    for (int q = 0; q < CI; q++)
        for (int t = 0; t < 9; t++) vf_store(acc_out + (q * 9 + t) * FM_VW, acc[q][t]);
}

static void wgrad_full(float *acc, const float *d, const float *x, size_t cs, int h, int w)
{
    wgrad_tile(acc, d, x, cs, h, w, WGRAD_CI);
}
static void wgrad_one(float *acc, const float *d, const float *x, size_t cs, int h, int w)
{
    wgrad_tile(acc, d, x, cs, h, w, 1);
}

static void wgrad(float *dW, float *db, float *dyt, float *xpad, const fm_conv *c, const float *x, const float *dy,
                  int n)
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
    float acc[WGRAD_CI * 9 * FM_VW];
    for (int i = 0; i < n; i++) /* image by image: its planes stay in cache */
        for (int co0 = 0; co0 < cout; co0 += 16)
            for (int v = 0; v < NV && co0 + v * FM_VW < cout; v++) {
                const int c0 = co0 + v * FM_VW, kout = cout - c0 < FM_VW ? cout - c0 : FM_VW;
                const float *d = dyt + ((size_t)(co0 / 16) * npix + (size_t)i * hw) * 16 + v * FM_VW;
                for (int ci = 0; ci < cin;) {
                    const int q = cin - ci >= WGRAD_CI ? WGRAD_CI : 1;
                    const float *xi = xpad + (size_t)ci * cstride + (size_t)i * pplane;
                    if (q == WGRAD_CI) wgrad_full(acc, d, xi, cstride, h, w);
                    else wgrad_one(acc, d, xi, cstride, h, w);
                    for (int a = 0; a < q; a++)
                        for (int t = 0; t < 9; t++)
                            for (int k = 0; k < kout; k++)
                                dW[((size_t)(c0 + k) * cin + ci + a) * 9 + t] += acc[(a * 9 + t) * FM_VW + k];
                    ci += q;
                }
            }
}

FM_ISA_TABLE(fm_conv_direct_ops) = {.forward = forward, .few = few, .wgrad = wgrad};
