#include "fm/conv.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

int fm_conv_shape(fm_conv *c, int cin, int cout, int h, int w, int stride)
{
    if (cin < 1 || cout < 1 || h < 1 || w < 1 || (stride != 1 && stride != 2)) return -1;
    *c = (fm_conv){cin, cout, h, w, stride, (h - 1) / stride + 1, (w - 1) / stride + 1};
    return 0;
}

size_t fm_conv_cols(const fm_conv *c) { return (size_t)c->cin * 9 * (size_t)c->ho * (size_t)c->wo; }

/* cols[(ci*3 + ky)*3 + kx, oy*wo + ox] = x[ci, oy*s + ky - 1, ox*s + kx - 1], 0 outside. */
static void im2col(float *cols, const fm_conv *c, const float *x)
{
    const int s = c->stride, P = c->ho * c->wo;
    for (int ci = 0; ci < c->cin; ci++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                float *row = cols + (size_t)((ci * 3 + ky) * 3 + kx) * P;
                for (int oy = 0; oy < c->ho; oy++) {
                    const int iy = oy * s + ky - 1;
                    float *r = row + (size_t)oy * c->wo;
                    if (iy < 0 || iy >= c->h) {
                        memset(r, 0, sizeof(float) * (size_t)c->wo);
                        continue;
                    }
                    const float *xr = x + ((size_t)ci * c->h + iy) * c->w;
                    for (int ox = 0; ox < c->wo; ox++) {
                        const int ix = ox * s + kx - 1;
                        r[ox] = ix >= 0 && ix < c->w ? xr[ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint: dx[ci, iy, ix] += dcols at every place im2col read it from. */
static void col2im(float *dx, const fm_conv *c, const float *cols)
{
    const int s = c->stride, P = c->ho * c->wo;
    memset(dx, 0, sizeof(float) * (size_t)c->cin * c->h * c->w);
    for (int ci = 0; ci < c->cin; ci++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const float *row = cols + (size_t)((ci * 3 + ky) * 3 + kx) * P;
                for (int oy = 0; oy < c->ho; oy++) {
                    const int iy = oy * s + ky - 1;
                    if (iy < 0 || iy >= c->h) continue;
                    float *xr = dx + ((size_t)ci * c->h + iy) * c->w;
                    const float *r = row + (size_t)oy * c->wo;
                    for (int ox = 0; ox < c->wo; ox++) {
                        const int ix = ox * s + kx - 1;
                        if (ix >= 0 && ix < c->w) xr[ix] += r[ox];
                    }
                }
            }
}

void fm_conv_forward(float *y, float *cols, const fm_conv *c, const float *x, const float *W, const float *b)
{
    const int P = c->ho * c->wo, K = c->cin * 9;
    im2col(cols, c, x);
    for (int o = 0; o < c->cout; o++)
        for (int p = 0; p < P; p++) y[(size_t)o * P + p] = b[o];
    /* y[cout, P] += W[cout, K] cols[K, P] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, P, K, 1.0f, W, K, cols, P, 1.0f, y, P);
}

void fm_conv_backward(float *dW, float *db, float *dx, float *cols, const fm_conv *c, const float *x, const float *W,
                      const float *dy)
{
    const int P = c->ho * c->wo, K = c->cin * 9;
    for (int o = 0; o < c->cout; o++) {
        float s = 0.0f;
        for (int p = 0; p < P; p++) s += dy[(size_t)o * P + p];
        db[o] += s;
    }
    im2col(cols, c, x);
    /* dW[cout, K] += dy[cout, P] cols[K, P]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, K, P, 1.0f, dy, P, cols, P, 1.0f, dW, K);
    if (!dx) return;
    /* dcols[K, P] = W[cout, K]^T dy[cout, P], then back to the image */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, c->cout, 1.0f, W, K, dy, P, 0.0f, cols, P);
    col2im(dx, c, cols);
}

void fm_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma, const float *beta,
                          int c, int hw, int g, float eps)
{
    const int cg = c / g;
    const size_t n = (size_t)cg * hw;
    for (int k = 0; k < g; k++) {
        const float *xg = x + (size_t)k * n;
        double s = 0.0, s2 = 0.0;
        for (size_t i = 0; i < n; i++) s += xg[i];
        const double mu = s / (double)n;
        for (size_t i = 0; i < n; i++) s2 += ((double)xg[i] - mu) * ((double)xg[i] - mu);
        mean[k] = (float)mu;
        rstd[k] = (float)(1.0 / sqrt(s2 / (double)n + eps));
        for (int ch = k * cg; ch < (k + 1) * cg; ch++) {
            const float a = gamma[ch] * rstd[k], b = beta[ch] - a * mean[k];
            const float *xc = x + (size_t)ch * hw;
            float *yc = y + (size_t)ch * hw;
            for (int i = 0; i < hw; i++) yc[i] = a * xc[i] + b;
        }
    }
}

void fm_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *gamma,
                           const float *mean, const float *rstd, int c, int hw, int g)
{
    const int cg = c / g;
    const double n = (double)cg * hw;
    for (int k = 0; k < g; k++) {
        /* With xhat = (x - mean) rstd and dxhat = gamma dy:
         * dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)). */
        double sd = 0.0, sdx = 0.0;
        for (int ch = k * cg; ch < (k + 1) * cg; ch++) {
            const float *xc = x + (size_t)ch * hw, *dc = dy + (size_t)ch * hw;
            double gb = 0.0, gg = 0.0;
            for (int i = 0; i < hw; i++) {
                const double xh = ((double)xc[i] - mean[k]) * rstd[k];
                gb += dc[i];
                gg += dc[i] * xh;
            }
            dbeta[ch] += (float)gb;
            dgamma[ch] += (float)gg;
            sd += gamma[ch] * gb;
            sdx += gamma[ch] * gg;
        }
        const double md = sd / n, mdx = sdx / n;
        for (int ch = k * cg; ch < (k + 1) * cg; ch++) {
            const float *xc = x + (size_t)ch * hw, *dc = dy + (size_t)ch * hw;
            float *o = dx + (size_t)ch * hw;
            for (int i = 0; i < hw; i++) {
                const double xh = ((double)xc[i] - mean[k]) * rstd[k];
                o[i] = (float)(rstd[k] * (gamma[ch] * dc[i] - md - xh * mdx));
            }
        }
    }
}
