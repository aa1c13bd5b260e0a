/* The U-Net's layers against double-precision loops: the 3 x 3 convolution (stride 1 and 2, odd
 * sizes, padding 1) forward, and its weight, bias and input gradients against central finite
 * differences of sum(r . y); GroupNorm likewise. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/conv.h"
#include "fm/rng.h"

/* y[o, oy, ox] = b[o] + sum W[o, ci, ky, kx] x[ci, oy s + ky - 1, ox s + kx - 1] in double. */
static void conv_naive(double *y, const fm_conv *c, const double *x, const double *W, const double *b)
{
    for (int o = 0; o < c->cout; o++)
        for (int oy = 0; oy < c->ho; oy++)
            for (int ox = 0; ox < c->wo; ox++) {
                double s = b[o];
                for (int ci = 0; ci < c->cin; ci++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            const int iy = oy * c->stride + ky - 1, ix = ox * c->stride + kx - 1;
                            if (iy >= 0 && iy < c->h && ix >= 0 && ix < c->w)
                                s += W[((o * c->cin + ci) * 3 + ky) * 3 + kx] * x[(ci * c->h + iy) * c->w + ix];
                        }
                y[(o * c->ho + oy) * c->wo + ox] = s;
            }
}

static double *dbl(const float *a, size_t n)
{
    double *d = malloc(sizeof(double) * n);
    for (size_t k = 0; k < n; k++) d[k] = a[k];
    return d;
}

static double conv_loss(const fm_conv *c, const double *x, const double *W, const double *b, const float *r)
{
    const size_t ny = (size_t)c->cout * c->ho * c->wo;
    double *y = malloc(sizeof(double) * ny), s = 0;
    conv_naive(y, c, x, W, b);
    for (size_t k = 0; k < ny; k++) s += r[k] * y[k];
    free(y);
    return s;
}

/* Central differences of loss(ctx) over every entry of p[n] (which loss reads through ctx): the
 * largest misfit of the gradient g, relative to 1e-3 + |fd|. */
static double fd_worst(double *p, size_t n, const float *g, double (*loss)(const void *), const void *ctx)
{
    double worst = 0;
    for (size_t k = 0; k < n; k++) {
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
} conv_ctx;

static double conv_ctx_loss(const void *p)
{
    const conv_ctx *q = p;
    return conv_loss(q->c, q->x, q->W, q->b, q->r);
}

static void check_conv(int cin, int cout, int h, int w, int stride)
{
    fm_conv c;
    CHECK(fm_conv_shape(&c, cin, cout, h, w, stride) == 0, "shape");
    const size_t nx = (size_t)cin * h * w, nw = (size_t)cout * cin * 9, ny = (size_t)cout * c.ho * c.wo;
    float *x = malloc(4 * nx), *W = malloc(4 * nw), *b = malloc(4 * cout), *y = malloc(4 * ny), *r = malloc(4 * ny);
    float *cols = malloc(4 * fm_conv_cols(&c)), *dW = calloc(nw, 4), *db = calloc(cout, 4), *dx = malloc(4 * nx);
    fm_rng_normal(x, 1, 0, 0, FM_STREAM_EVAL, (int)nx);
    fm_rng_normal(W, 2, 0, 0, FM_STREAM_EVAL, (int)nw);
    fm_rng_normal(b, 3, 0, 0, FM_STREAM_EVAL, cout);
    fm_rng_normal(r, 4, 0, 0, FM_STREAM_EVAL, (int)ny);
    fm_conv_forward(y, cols, &c, x, W, b);
    double *xd = dbl(x, nx), *Wd = dbl(W, nw), *bd = dbl(b, cout), *yd = malloc(sizeof(double) * ny), ey = 0;
    conv_naive(yd, &c, xd, Wd, bd);
    for (size_t k = 0; k < ny; k++) ey = fmax(ey, fabs(y[k] - yd[k]));
    CHECK(ey < 1e-4, "conv %d->%d %dx%d stride %d: forward error %g", cin, cout, h, w, stride, ey);
    fm_conv_backward(dW, db, dx, cols, &c, x, W, r);
    const conv_ctx q = {&c, xd, Wd, bd, r};
    const double ew = fd_worst(Wd, nw, dW, conv_ctx_loss, &q);
    const double eb = fd_worst(bd, (size_t)cout, db, conv_ctx_loss, &q);
    const double ex = fd_worst(xd, nx, dx, conv_ctx_loss, &q);
    CHECK(ew < 1e-3 && eb < 1e-3 && ex < 1e-3, "conv %d->%d %dx%d stride %d: gradient misfits W %g b %g x %g", cin,
          cout, h, w, stride, ew, eb, ex);
    free(x); free(W); free(b); free(y); free(r); free(cols); free(dW); free(db); free(dx);
    free(xd); free(Wd); free(bd); free(yd);
}

static double gn_loss(const double *x, const double *gamma, const double *beta, const float *r, int c, int hw, int g)
{
    const int cg = c / g;
    double s = 0;
    for (int k = 0; k < g; k++) {
        double mu = 0, var = 0;
        const int n = cg * hw;
        for (int i = 0; i < n; i++) mu += x[k * n + i];
        mu /= n;
        for (int i = 0; i < n; i++) var += (x[k * n + i] - mu) * (x[k * n + i] - mu);
        const double rs = 1 / sqrt(var / n + 1e-5);
        for (int ch = k * cg; ch < (k + 1) * cg; ch++)
            for (int i = 0; i < hw; i++) s += r[ch * hw + i] * (gamma[ch] * (x[ch * hw + i] - mu) * rs + beta[ch]);
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
    enum { C = 6, HW = 10, G = 3 };
    float x[C * HW], y[C * HW], r[C * HW], gamma[C], beta[C], mean[G], rstd[G], dx[C * HW], dg[C] = {0}, dbt[C] = {0};
    fm_rng_normal(x, 5, 0, 0, FM_STREAM_EVAL, C * HW);
    for (int k = 0; k < C * HW; k++) x[k] = 3.0f + 2.0f * x[k]; /* not centred, not unit */
    fm_rng_normal(r, 6, 0, 0, FM_STREAM_EVAL, C * HW);
    fm_rng_normal(gamma, 7, 0, 0, FM_STREAM_EVAL, C);
    fm_rng_normal(beta, 8, 0, 0, FM_STREAM_EVAL, C);
    fm_groupnorm_forward(y, mean, rstd, x, gamma, beta, C, HW, G, 1e-5f);
    /* each group's normalised values (y - beta) / gamma have mean 0 and variance 1 */
    for (int k = 0; k < G; k++) {
        double m = 0, v = 0;
        for (int ch = 2 * k; ch < 2 * k + 2; ch++)
            for (int i = 0; i < HW; i++) {
                const double xh = (y[ch * HW + i] - beta[ch]) / gamma[ch];
                m += xh;
                v += xh * xh;
            }
        CHECK(fabs(m / (2 * HW)) < 1e-5 && fabs(v / (2 * HW) - 1) < 1e-3, "group %d: mean %g, var %g", k, m, v);
    }
    fm_groupnorm_backward(dx, dg, dbt, r, x, gamma, mean, rstd, C, HW, G);
    double *xd = dbl(x, C * HW), *gd = dbl(gamma, C), *bd = dbl(beta, C);
    const gn_ctx q = {xd, gd, bd, r, C, HW, G};
    const double ex = fd_worst(xd, (size_t)C * HW, dx, gn_ctx_loss, &q);
    const double eg = fd_worst(gd, (size_t)C, dg, gn_ctx_loss, &q);
    const double eb = fd_worst(bd, (size_t)C, dbt, gn_ctx_loss, &q);
    CHECK(ex < 1e-3 && eg < 1e-3 && eb < 1e-3, "groupnorm gradient misfits x %g gamma %g beta %g", ex, eg, eb);
    free(xd); free(gd); free(bd);
}

int main(void)
{
    check_conv(3, 4, 7, 5, 1);
    check_conv(3, 4, 7, 5, 2);
    check_conv(2, 3, 8, 8, 2);
    check_conv(1, 2, 1, 1, 1);
    fm_conv c;
    CHECK(fm_conv_shape(&c, 3, 4, 7, 5, 3) == -1 && fm_conv_shape(&c, 0, 4, 7, 5, 1) == -1, "bad shapes refused");
    CHECK(fm_conv_shape(&c, 1, 1, 28, 28, 2) == 0 && c.ho == 14 && c.wo == 14 && fm_conv_shape(&c, 1, 1, 7, 7, 2) == 0 &&
          c.ho == 4, "output sizes");
    check_groupnorm();
    return check_report("test_conv");
}
