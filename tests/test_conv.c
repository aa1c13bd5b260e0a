/* The U-Net's layers against double-precision loops, on microbatches in the CNHW layout: the
 * 3 x 3 convolution (stride 1 and 2, odd sizes, padding 1, microbatches larger than one im2col
 * pass) forward, and its weight, bias and input gradients against central finite differences of
 * sum(r . y); GroupNorm and the upsampling likewise. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/conv.h"
#include "fm/rng.h"

/* y[o, i, oy, ox] = b[o] + sum W[o, ci, ky, kx] x[ci, i, oy s + ky - 1, ox s + kx - 1] in double. */
static void conv_naive(double *y, const fm_conv *c, const double *x, const double *W, const double *b, int n)
{
    for (int o = 0; o < c->cout; o++)
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < c->ho; oy++)
                for (int ox = 0; ox < c->wo; ox++) {
                    double s = b[o];
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                const int iy = oy * c->stride + ky - 1, ix = ox * c->stride + kx - 1;
                                if (iy >= 0 && iy < c->h && ix >= 0 && ix < c->w)
                                    s += W[((o * c->cin + ci) * 3 + ky) * 3 + kx] *
                                         x[((ci * n + i) * c->h + iy) * c->w + ix];
                            }
                    y[((o * n + i) * c->ho + oy) * c->wo + ox] = s;
                }
}

static double *dbl(const float *a, size_t n)
{
    double *d = malloc(sizeof(double) * n);
    for (size_t k = 0; k < n; k++) d[k] = a[k];
    return d;
}

static double conv_loss(const fm_conv *c, const double *x, const double *W, const double *b, const float *r, int n)
{
    const size_t ny = (size_t)c->cout * n * c->ho * c->wo;
    double *y = malloc(sizeof(double) * ny), s = 0;
    conv_naive(y, c, x, W, b, n);
    for (size_t k = 0; k < ny; k++) s += r[k] * y[k];
    free(y);
    return s;
}

/* Central differences of loss(ctx) over the entries of p[n] (which loss reads through ctx; about
 * 200 of them, spread evenly, when there are more): the largest misfit of the gradient g,
 * relative to 1e-3 + |fd|. */
static double fd_worst(double *p, size_t n, const float *g, double (*loss)(const void *), const void *ctx)
{
    double worst = 0;
    const size_t step = n > 200 ? n / 200 : 1;
    for (size_t k = 0; k < n; k += step) {
        const double p0 = p[k], h = 1e-6;
        p[k] = p0 + h;
        const double lp = loss(ctx);
        p[k] = p0 - h;
        const double fd = (lp - loss(ctx)) / (2 * h);
        p[k] = p0;
        worst = fmax(worst, fabs(g[k] - fd) / (1e-3 + fabs(fd)));
    }
    return worst;
}

typedef struct {
    const fm_conv *c;
    const double *x, *W, *b;
    const float *r;
    int n;
} conv_ctx;

static double conv_ctx_loss(const void *p)
{
    const conv_ctx *q = p;
    return conv_loss(q->c, q->x, q->W, q->b, q->r, q->n);
}

static void check_conv(int cin, int cout, int h, int w, int stride, int n)
{
    fm_conv c;
    CHECK(fm_conv_shape(&c, cin, cout, h, w, stride) == 0, "shape");
    const size_t nx = (size_t)cin * n * h * w, nw = (size_t)cout * cin * 9, ny = (size_t)cout * n * c.ho * c.wo;
    float *x = malloc(4 * nx), *W = malloc(4 * nw), *b = malloc(4 * cout), *y = malloc(4 * ny), *r = malloc(4 * ny);
    float *cols = malloc(4 * fm_conv_cols(&c, n)), *dW = calloc(nw, 4), *db = calloc(cout, 4), *dx = malloc(4 * nx);
    fm_rng_normal(x, 1, 0, 0, FM_STREAM_EVAL, (int)nx);
    fm_rng_normal(W, 2, 0, 0, FM_STREAM_EVAL, (int)nw);
    fm_rng_normal(b, 3, 0, 0, FM_STREAM_EVAL, cout);
    fm_rng_normal(r, 4, 0, 0, FM_STREAM_EVAL, (int)ny);
    fm_conv_forward(y, cols, &c, x, W, b, n);
    double *xd = dbl(x, nx), *Wd = dbl(W, nw), *bd = dbl(b, cout), *yd = malloc(sizeof(double) * ny), ey = 0;
    conv_naive(yd, &c, xd, Wd, bd, n);
    for (size_t k = 0; k < ny; k++) ey = fmax(ey, fabs(y[k] - yd[k]));
    CHECK(ey < 1e-4, "conv %d->%d %dx%d stride %d n %d: forward error %g", cin, cout, h, w, stride, n, ey);
    fm_conv_backward(dW, db, dx, cols, &c, x, W, r, n);
    const conv_ctx q = {&c, xd, Wd, bd, r, n};
    const double ew = fd_worst(Wd, nw, dW, conv_ctx_loss, &q);
    const double eb = fd_worst(bd, (size_t)cout, db, conv_ctx_loss, &q);
    const double ex = fd_worst(xd, nx, dx, conv_ctx_loss, &q);
    CHECK(ew < 1e-3 && eb < 1e-3 && ex < 1e-3, "conv %d->%d %dx%d stride %d: gradient misfits W %g b %g x %g", cin,
          cout, h, w, stride, ew, eb, ex);
    free(x); free(W); free(b); free(y); free(r); free(cols); free(dW); free(db); free(dx);
    free(xd); free(Wd); free(bd); free(yd);
}

/* x[ch, img, p] of NI images in the CNHW layout */
#define AT(ch, img, p) (((ch) * NI + (img)) * hw + (p))
enum { NI = 2 };

static double gn_loss(const double *x, const double *gamma, const double *beta, const float *r, int c, int hw, int g)
{
    const int cg = c / g, cnt = cg * hw;
    double s = 0;
    for (int img = 0; img < NI; img++)
        for (int k = 0; k < g; k++) {
            double mu = 0, var = 0;
            for (int ch = k * cg; ch < (k + 1) * cg; ch++)
                for (int p = 0; p < hw; p++) mu += x[AT(ch, img, p)];
            mu /= cnt;
            for (int ch = k * cg; ch < (k + 1) * cg; ch++)
                for (int p = 0; p < hw; p++) var += (x[AT(ch, img, p)] - mu) * (x[AT(ch, img, p)] - mu);
            const double rs = 1 / sqrt(var / cnt + 1e-5);
            for (int ch = k * cg; ch < (k + 1) * cg; ch++)
                for (int p = 0; p < hw; p++)
                    s += r[AT(ch, img, p)] * (gamma[ch] * (x[AT(ch, img, p)] - mu) * rs + beta[ch]);
        }
    return s;
}

typedef struct {
    const double *x, *gamma, *beta;
    const float *r;
    int c, hw, g;
} gn_ctx;

static double gn_ctx_loss(const void *p)
{
    const gn_ctx *q = p;
    return gn_loss(q->x, q->gamma, q->beta, q->r, q->c, q->hw, q->g);
}

static void check_groupnorm(void)
{
    enum { C = 6, HW = 10, G = 3, N = C * NI * HW };
    const int hw = HW;
    float x[N], y[N], r[N], gamma[C], beta[C], mean[NI * G], rstd[NI * G], dx[N], dg[C] = {0}, dbt[C] = {0};
    fm_rng_normal(x, 5, 0, 0, FM_STREAM_EVAL, N);
    for (int k = 0; k < N; k++) x[k] = 3.0f + 2.0f * x[k] + (float)(k % 7); /* not centred, not unit */
    fm_rng_normal(r, 6, 0, 0, FM_STREAM_EVAL, N);
    fm_rng_normal(gamma, 7, 0, 0, FM_STREAM_EVAL, C);
    fm_rng_normal(beta, 8, 0, 0, FM_STREAM_EVAL, C);
    double sums[2 * C * NI];
    fm_groupnorm_forward(y, mean, rstd, sums, x, gamma, beta, C, NI, HW, G, 1e-5f);
    /* each image's groups' normalised values (y - beta) / gamma have mean 0 and variance 1 */
    for (int img = 0; img < NI; img++)
        for (int k = 0; k < G; k++) {
            double m = 0, v = 0;
            for (int ch = 2 * k; ch < 2 * k + 2; ch++)
                for (int p = 0; p < HW; p++) {
                    const double xh = (y[AT(ch, img, p)] - beta[ch]) / gamma[ch];
                    m += xh;
                    v += xh * xh;
                }
            CHECK(fabs(m / (2 * HW)) < 1e-5 && fabs(v / (2 * HW) - 1) < 1e-3, "image %d group %d: mean %g, var %g", img,
                  k, m, v);
        }
    fm_groupnorm_backward(dx, dg, dbt, r, x, gamma, mean, rstd, C, NI, HW, G);
    double *xd = dbl(x, N), *gd = dbl(gamma, C), *bd = dbl(beta, C);
    const gn_ctx q = {xd, gd, bd, r, C, HW, G};
    const double ex = fd_worst(xd, (size_t)N, dx, gn_ctx_loss, &q);
    const double eg = fd_worst(gd, (size_t)C, dg, gn_ctx_loss, &q);
    const double eb = fd_worst(bd, (size_t)C, dbt, gn_ctx_loss, &q);
    CHECK(ex < 1e-3 && eg < 1e-3 && eb < 1e-3, "groupnorm gradient misfits x %g gamma %g beta %g", ex, eg, eb);
    free(xd); free(gd); free(bd);
}

/* The direct kernel (forced on, whatever the machine): its forward against the double loops, and
 * its transposed convolution against the im2col path's input gradient; widths that take every
 * tile length (16, 14, 8, 7, 4, 2, 1) and output channels not a multiple of 16. */
static void check_direct(int cin, int cout, int h, int w, int n, int stride)
{
    fm_conv c;
    CHECK(fm_conv_shape(&c, cin, cout, h, w, stride) == 0, "shape");
    fm_conv_set_direct(1);
    CHECK(fm_conv_direct_ok(&c, 0) == (cout >= 16) && fm_conv_direct_ok(&c, 1) == (cin >= 16 && stride == 1),
          "direct where it pays");
    const size_t nx = (size_t)cin * n * h * w, nw = (size_t)cout * cin * 9, ny = (size_t)cout * n * c.ho * c.wo;
    float *x = malloc(4 * nx), *W = malloc(4 * nw), *b = malloc(4 * cout), *y = malloc(4 * ny), *dy = malloc(4 * ny);
    float *wp = malloc(4 * fm_conv_packed_size(&c, 0)), *wt = malloc(4 * fm_conv_packed_size(&c, 1));
    float *pad = malloc(4 * (fm_conv_pad_size(&c, n, 0) > fm_conv_pad_size(&c, n, 1) ? fm_conv_pad_size(&c, n, 0)
                                                                                        : fm_conv_pad_size(&c, n, 1)));
    float *dx = malloc(4 * nx), *dx2 = malloc(4 * nx), *cols = malloc(4 * fm_conv_cols(&c, n));
    float *dW = calloc(nw, 4), *db = calloc(cout, 4);
    fm_rng_normal(x, 21, 0, 0, FM_STREAM_EVAL, (int)nx);
    fm_rng_normal(W, 22, 0, 0, FM_STREAM_EVAL, (int)nw);
    fm_rng_normal(b, 23, 0, 0, FM_STREAM_EVAL, cout);
    fm_rng_normal(dy, 24, 0, 0, FM_STREAM_EVAL, (int)ny);
    fm_conv_pack(wp, &c, W, 0);
    if (stride == 1) fm_conv_pack(wt, &c, W, 1);
    fm_conv_direct(y, pad, &c, x, wp, b, n, 0);
    double *xd = dbl(x, nx), *Wd = dbl(W, nw), *bd = dbl(b, cout), *yd = malloc(sizeof(double) * ny), ey = 0, ex = 0;
    conv_naive(yd, &c, xd, Wd, bd, n);
    for (size_t k = 0; k < ny; k++) ey = fmax(ey, fabs(y[k] - yd[k]));
    double ew = 0, eb = 0;
    if (stride == 1) { /* the transposed conv and the weight gradient exist for stride 1 */
        fm_conv_direct(dx, pad, &c, dy, wt, NULL, n, 1);
        fm_conv_backward(dW, db, dx2, cols, &c, x, W, dy, n);
        for (size_t k = 0; k < nx; k++) ex = fmax(ex, fabs(dx[k] - dx2[k]));
        /* the weight gradient, added to what is there */
        float *dW2 = malloc(4 * nw), *db2 = malloc(4 * cout), *dyt = malloc(4 * fm_conv_wgrad_size(&c, n));
        for (size_t k = 0; k < nw; k++) dW2[k] = 1.0f;
        for (int k = 0; k < cout; k++) db2[k] = 2.0f;
        fm_conv_direct_wgrad(dW2, db2, dyt, pad, &c, x, dy, n);
        for (size_t k = 0; k < nw; k++) ew = fmax(ew, fabs(dW2[k] - 1.0f - dW[k]) / (1 + fabs(dW[k])));
        for (int k = 0; k < cout; k++) eb = fmax(eb, fabs(db2[k] - 2.0f - db[k]) / (1 + fabs(db[k])));
        free(dW2); free(db2); free(dyt);
    }
    CHECK(ey < 1e-4 && ex < 1e-4 && ew < 1e-4 && eb < 1e-4,
          "direct conv %d->%d %dx%d stride %d n %d: forward error %g, transposed %g, weight gradient %g, bias %g", cin,
          cout, h, w, stride, n, ey, ex, ew, eb);
    fm_conv_set_direct(-1);
    free(x); free(W); free(b); free(y); free(dy); free(wp); free(wt); free(pad); free(dx); free(dx2); free(cols);
    free(dW); free(db); free(xd); free(Wd); free(bd); free(yd);
}

/* The direct kernel for fewer than 16 outputs, against the double loops. */
static void check_few(int cin, int cout, int h, int w, int n)
{
    fm_conv c;
    CHECK(fm_conv_shape(&c, cin, cout, h, w, 1) == 0, "shape");
    fm_conv_set_direct(1);
    CHECK(fm_conv_direct_few_ok(&c) == (cout < 16), "few outputs");
    const size_t nx = (size_t)cin * n * h * w, nw = (size_t)cout * cin * 9, ny = (size_t)cout * n * h * w;
    float *x = malloc(4 * nx), *W = malloc(4 * nw), *b = malloc(4 * cout), *y = malloc(4 * ny);
    float *pad = malloc(4 * fm_conv_pad_size(&c, n, 0));
    fm_rng_normal(x, 31, 0, 0, FM_STREAM_EVAL, (int)nx);
    fm_rng_normal(W, 32, 0, 0, FM_STREAM_EVAL, (int)nw);
    fm_rng_normal(b, 33, 0, 0, FM_STREAM_EVAL, cout);
    fm_conv_direct_few(y, pad, &c, x, W, b, n);
    double *xd = dbl(x, nx), *Wd = dbl(W, nw), *bd = dbl(b, cout), *yd = malloc(sizeof(double) * ny), ey = 0;
    conv_naive(yd, &c, xd, Wd, bd, n);
    for (size_t k = 0; k < ny; k++) ey = fmax(ey, fabs(y[k] - yd[k]));
    CHECK(ey < 1e-4, "direct conv, few outputs, %d->%d %dx%d n %d: forward error %g", cin, cout, h, w, n, ey);
    fm_conv_set_direct(-1);
    free(x); free(W); free(b); free(y); free(pad); free(xd); free(Wd); free(bd); free(yd);
}

/* Upsampling: every output pixel is its nearest input pixel; the backward is its adjoint
 * (<up(x), r> = <x, up^T(r)>). */
static void check_upsample(void)
{
    enum { PL = 3, H = 2, W = 3, NX = PL * H * W, NY = 4 * NX };
    float x[NX], y[NY], r[NY], dx[NX];
    fm_rng_normal(x, 9, 0, 0, FM_STREAM_EVAL, NX);
    fm_rng_normal(r, 10, 0, 0, FM_STREAM_EVAL, NY);
    fm_upsample2_forward(y, x, PL, H, W);
    int bad = 0;
    for (int q = 0; q < PL; q++)
        for (int yy = 0; yy < 2 * H; yy++)
            for (int xx = 0; xx < 2 * W; xx++) bad += y[(q * 2 * H + yy) * 2 * W + xx] != x[(q * H + yy / 2) * W + xx / 2];
    CHECK(bad == 0, "upsample: %d pixels not their nearest input's", bad);
    fm_upsample2_backward(dx, r, PL, H, W);
    double a = 0, b = 0;
    for (int k = 0; k < NY; k++) a += (double)y[k] * r[k];
    for (int k = 0; k < NX; k++) b += (double)x[k] * dx[k];
    CHECK(fabs(a - b) < 1e-4 * (1 + fabs(a)), "upsample backward is not the adjoint: %g vs %g", a, b);
}

static void check_all(void)
{
    check_conv(3, 4, 7, 5, 1, 1);
    check_conv(3, 4, 7, 5, 2, 3);
    check_conv(2, 3, 8, 8, 2, 2);
    check_conv(1, 2, 1, 1, 1, 4);
    /* more images than one im2col pass holds (chunks of 1 here), with a last partial pass */
    fm_conv big;
    CHECK(fm_conv_shape(&big, 80, 2, 20, 20, 1) == 0 && fm_conv_chunk(&big, 3) == 1, "chunk of a wide conv");
    check_conv(40, 1, 27, 27, 1, 3);
    fm_conv c;
    CHECK(fm_conv_shape(&c, 3, 4, 7, 5, 3) == -1 && fm_conv_shape(&c, 0, 4, 7, 5, 1) == -1, "bad shapes refused");
    CHECK(fm_conv_shape(&c, 1, 1, 28, 28, 2) == 0 && c.ho == 14 && c.wo == 14 && fm_conv_shape(&c, 1, 1, 7, 7, 2) == 0 &&
          c.ho == 4, "output sizes");
    check_groupnorm();
    check_upsample();
    /* tiles: AVX-512 a row at a time, at most 16 pixels (the splits in the comments); AVX2 (6)
     * and SSE2 (2) over the whole image in raster order, tiles across rows */
    check_direct(16, 20, 5, 28, 2, 1);  /* 14 14 */
    check_direct(17, 16, 3, 61, 1, 1);  /* 16 15 15 15 */
    check_direct(3, 33, 2, 31, 2, 1);   /* 16 15; transposed: too few outputs */
    check_direct(32, 16, 7, 14, 3, 1);  /* 14 */
    check_direct(20, 18, 7, 7, 2, 1);   /* 7 */
    check_direct(16, 16, 4, 16, 1, 1);  /* 16 */
    check_direct(16, 17, 1, 8, 1, 1);   /* 8 */
    check_direct(16, 32, 28, 28, 2, 2); /* stride 2: rows of 14 */
    check_direct(5, 17, 7, 9, 2, 2);    /* 4 x 5 outputs: 5 */
    check_few(32, 1, 28, 28, 2);
    check_few(7, 3, 5, 9, 3);
}

int main(void)
{
    /* Every build of the kernels this machine runs (SSE2, AVX2, AVX-512), each with its own tiles;
     * the direct kernels are forced on where they apply, the builds that use them by default
     * (AVX2 and wider) and SSE2 too. */
    check_each_isa(check_all);
    return check_report("test_conv");
}
