/* The direct convolutions' interface (include/fm/conv.h): where they apply, the packing of the
 * weights, the scratch sizes, and the calls into the active build of src/conv_direct.c. */
#include <string.h>

#include "fm/conv.h"
#include "fm/isa.h"
#include "fm/kern_ops.h"

static int direct = -1; /* -1: where the kernels are AVX2 or wider */

void fm_conv_set_direct(int on) { direct = on; }

/* With 16 registers of 4 floats (SSE2) a tile holds 2 pixels: im2col and sgemm do better. */
static int enabled(void) { return direct >= 0 ? direct : fm_isa_active() >= FM_ISA_AVX2; }

int fm_conv_direct_few_ok(const fm_conv *c) { return enabled() && c->stride == 1 && c->cout < 16; }

int fm_conv_direct_ok(const fm_conv *c, int transposed)
{
    const int out = transposed ? c->cin : c->cout;
    /* fewer than 16 outputs would waste most of the vector; the transposed conv of stride 2 is not
     * a convolution of this kind */
    return enabled() && (c->stride == 1 || !transposed) && out >= 16;
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

size_t fm_conv_wgrad_size(const fm_conv *c, int n) { return (size_t)blocks16(c->cout) * 16 * n * c->h * c->w; }

void fm_conv_direct(float *y, float *xpad, const fm_conv *c, const float *x, const float *wp, const float *b, int n,
                    int transposed)
{
    fm_isa_conv()->forward(y, xpad, c, x, wp, b, n, transposed);
}

void fm_conv_direct_few(float *y, float *xpad, const fm_conv *c, const float *x, const float *W, const float *b, int n)
{
    fm_isa_conv()->few(y, xpad, c, x, W, b, n);
}

void fm_conv_direct_wgrad(float *dW, float *db, float *dyt, float *xpad, const fm_conv *c, const float *x,
                          const float *dy, int n)
{
    fm_isa_conv()->wgrad(dW, db, dyt, xpad, c, x, dy, n);
}
