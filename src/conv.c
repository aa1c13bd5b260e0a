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

/* About 1 MB of im2col, but at least one image. */
#define COLS_BUDGET (1 << 18)

int fm_conv_chunk(const fm_conv *c, int n)
{
    const size_t per = (size_t)c->cin * 9 * (size_t)c->ho * c->wo;
    const size_t k = COLS_BUDGET / per;
    return k < 1 ? 1 : k > (size_t)n ? n : (int)k;
}

size_t fm_conv_cols(const fm_conv *c, int n)
{
    return (size_t)c->cin * 9 * (size_t)c->ho * c->wo * (size_t)fm_conv_chunk(c, n);
}

/* Stride 1: tap (ky, kx) of a plane is the plane shifted by (ky - 1, kx - 1) with zeros coming
 * in: one copy of the rows that stay inside, then the zeros of the edge rows and column. */
static void shifted_plane(float *row /* [h, w] */, const float *xp /* [h, w] */, int h, int w, int ky, int kx)
{
    const int oy0 = ky == 0 ? 1 : 0, oy1 = ky == 2 ? h - 1 : h, count = (oy1 - oy0) * w;
    if (oy0) memset(row, 0, sizeof(float) * (size_t)w);
    if (oy1 < h && oy1 >= 0) memset(row + (size_t)oy1 * w, 0, sizeof(float) * (size_t)w);
    if (count <= 0) return;
    float *dst = row + (size_t)oy0 * w;
    const float *src = xp + (ptrdiff_t)(oy0 + ky - 1) * w + (kx - 1);
    if (kx == 1) {
        memcpy(dst, src, sizeof(float) * (size_t)count);
    } else if (kx == 0) { /* column 0 came from the row above's end */
        memcpy(dst + 1, src + 1, sizeof(float) * (size_t)(count - 1));
        for (int oy = oy0; oy < oy1; oy++) row[(size_t)oy * w] = 0.0f;
    } else { /* column w - 1 came from the next row's start */
        memcpy(dst, src, sizeof(float) * (size_t)(count - 1));
        for (int oy = oy0; oy < oy1; oy++) row[(size_t)oy * w + w - 1] = 0.0f;
    }
}

/* For images i0 .. i0+m-1 of x [cin, n, h, w]:
 * cols[(ci*3 + ky)*3 + kx, (j*ho + oy)*wo + ox] = x[ci, i0 + j, oy*s + ky - 1, ox*s + kx - 1], 0 outside. */
static void im2col(float *cols, const fm_conv *c, const float *x, int n, int i0, int m)
{
    const int s = c->stride, P = c->ho * c->wo;
    const size_t plane = (size_t)c->h * c->w, ld = (size_t)m * P;
    for (int ci = 0; ci < c->cin; ci++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++)
                for (int j = 0; j < m; j++) {
                    float *row = cols + (size_t)((ci * 3 + ky) * 3 + kx) * ld + (size_t)j * P;
                    const float *xp = x + ((size_t)ci * n + i0 + j) * plane;
                    if (s == 1) {
                        shifted_plane(row, xp, c->h, c->w, ky, kx);
                        continue;
                    }
                    for (int oy = 0; oy < c->ho; oy++) {
                        const int iy = oy * s + ky - 1;
                        float *r = row + (size_t)oy * c->wo;
                        if (iy < 0 || iy >= c->h) {
                            memset(r, 0, sizeof(float) * (size_t)c->wo);
                            continue;
                        }
                        const float *xr = xp + (size_t)iy * c->w;
                        for (int ox = 0; ox < c->wo; ox++) {
                            const int ix = ox * s + kx - 1;
                            r[ox] = ix >= 0 && ix < c->w ? xr[ix] : 0.0f;
                        }
                    }
                }
}

/* The adjoint: dx[ci, i0 + j, iy, ix] += dcols at every place im2col read it from. */
static void col2im(float *dx, const fm_conv *c, const float *cols, int n, int i0, int m)
{
    const int s = c->stride, P = c->ho * c->wo;
    const size_t plane = (size_t)c->h * c->w, ld = (size_t)m * P;
    for (int ci = 0; ci < c->cin; ci++)
        for (int j = 0; j < m; j++) {
            float *xp = dx + ((size_t)ci * n + i0 + j) * plane;
            memset(xp, 0, sizeof(float) * plane);
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    const float *row = cols + (size_t)((ci * 3 + ky) * 3 + kx) * ld + (size_t)j * P;
                    for (int oy = 0; oy < c->ho; oy++) {
                        const int iy = oy * s + ky - 1;
                        if (iy < 0 || iy >= c->h) continue;
                        float *xr = xp + (size_t)iy * c->w;
                        const float *r = row + (size_t)oy * c->wo;
                        if (s == 1) { /* the shifted add of im2col's shifted copy */
                            const int lo = kx == 0 ? 1 : 0, hi = kx == 2 ? c->wo - 1 : c->wo;
                            float *restrict xo = xr + kx - 1;
                            for (int ox = lo; ox < hi; ox++) xo[ox] += r[ox];
                            continue;
                        }
                        for (int ox = 0; ox < c->wo; ox++) {
                            const int ix = ox * s + kx - 1;
                            if (ix >= 0 && ix < c->w) xr[ix] += r[ox];
                        }
                    }
                }
        }
}

void fm_conv_forward(float *y, float *cols, const fm_conv *c, const float *x, const float *W, const float *b, int n)
{
    const int P = c->ho * c->wo, K = c->cin * 9, chunk = fm_conv_chunk(c, n), ldy = n * P;
    if (b)
        for (int o = 0; o < c->cout; o++)
            for (int p = 0; p < ldy; p++) y[(size_t)o * ldy + p] = b[o];
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int m = n - i0 < chunk ? n - i0 : chunk;
        im2col(cols, c, x, n, i0, m);
        /* y[cout, images i0.., P] (+)= W[cout, K] cols[K, m P] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, m * P, K, 1.0f, W, K, cols, m * P,
                    b ? 1.0f : 0.0f, y + (size_t)i0 * P, ldy);
    }
}

void fm_conv_backward(float *dW, float *db, float *dx, float *cols, const fm_conv *c, const float *x, const float *W,
                      const float *dy, int n)
{
    const int P = c->ho * c->wo, K = c->cin * 9, chunk = fm_conv_chunk(c, n), ldy = n * P;
    for (int o = 0; o < c->cout && dW; o++) {
        float s = 0.0f;
        for (int p = 0; p < ldy; p++) s += dy[(size_t)o * ldy + p];
        db[o] += s;
    }
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int m = n - i0 < chunk ? n - i0 : chunk;
        const float *dyc = dy + (size_t)i0 * P;
        if (dW) {
            im2col(cols, c, x, n, i0, m);
            /* dW[cout, K] += dy[cout, m P] cols[K, m P]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, K, m * P, 1.0f, dyc, ldy, cols, m * P, 1.0f,
                        dW, K);
        }
        if (!dx) continue;
        /* dcols[K, m P] = W[cout, K]^T dy[cout, m P], then back to the images */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, m * P, c->cout, 1.0f, W, K, dyc, ldy, 0.0f, cols, m * P);
        col2im(dx, c, cols, n, i0, m);
    }
}

/* The sum and the sum of squares of a plane, in 16 float lanes (the loop vectorises), added in
 * double. */
static void plane_sums(double *sum, double *sumsq, const float *x, int n)
{
    float a[16] = {0}, b[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) a[k] += x[i + k], b[k] += x[i + k] * x[i + k];
    double s = 0.0, s2 = 0.0;
    for (; i < n; i++) s += x[i], s2 += (double)x[i] * x[i];
    for (int k = 0; k < 16; k++) s += a[k], s2 += b[k];
    *sum = s;
    *sumsq = s2;
}

/* sum of dy, and of dy (x - mu). */
static void plane_dots(double *sdy, double *sdyx, const float *dy, const float *x, int n, float mu)
{
    float a[16] = {0}, b[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) {
            a[k] += dy[i + k];
            b[k] += dy[i + k] * (x[i + k] - mu);
        }
    double s = 0.0, t = 0.0;
    for (; i < n; i++) s += dy[i], t += (double)dy[i] * (x[i] - mu);
    for (int k = 0; k < 16; k++) s += a[k], t += b[k];
    *sdy = s;
    *sdyx = t;
}

void fm_groupnorm_apply(float *y, float *mean, float *rstd, const float *x, const double *sum, const double *sumsq,
                        const float *gamma, const float *beta, int c, int n, int hw, int g, float eps)
{
    const int cg = c / g;
    const double cnt = (double)cg * hw;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g; k++) {
            double s = 0.0, s2 = 0.0;
            for (int ch = k * cg; ch < (k + 1) * cg; ch++) s += sum[(size_t)ch * n + i], s2 += sumsq[(size_t)ch * n + i];
            const double mu = s / cnt, var = s2 / cnt - mu * mu;
            const int q = i * g + k;
            mean[q] = (float)mu;
            rstd[q] = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps));
            for (int ch = k * cg; ch < (k + 1) * cg; ch++) {
                const float a = gamma[ch] * rstd[q], b = beta[ch] - a * mean[q];
                const float *xc = x + ((size_t)ch * n + i) * hw;
                float *yc = y + ((size_t)ch * n + i) * hw;
                for (int p = 0; p < hw; p++) yc[p] = a * xc[p] + b;
            }
        }
}

void fm_groupnorm_forward(float *y, float *mean, float *rstd, double *sums, const float *x, const float *gamma,
                          const float *beta, int c, int n, int hw, int g, float eps)
{
    double *sum = sums, *sumsq = sums + (size_t)c * n;
    for (size_t q = 0; q < (size_t)c * n; q++) plane_sums(&sum[q], &sumsq[q], x + q * hw, hw);
    fm_groupnorm_apply(y, mean, rstd, x, sum, sumsq, gamma, beta, c, n, hw, g, eps);
}

void fm_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *gamma,
                           const float *mean, const float *rstd, int c, int n, int hw, int g)
{
    const int cg = c / g;
    const double cnt = (double)cg * hw;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g; k++) {
            /* With xhat = (x - mean) rstd and dxhat = gamma dy:
             * dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)). */
            const int q = i * g + k;
            const float mu = mean[q], rs = rstd[q];
            double sd = 0.0, sdx = 0.0;
            for (int ch = k * cg; ch < (k + 1) * cg; ch++) {
                const size_t at = ((size_t)ch * n + i) * hw;
                double gb, gx;
                plane_dots(&gb, &gx, dy + at, x + at, hw, mu);
                dbeta[ch] += (float)gb;
                dgamma[ch] += (float)(gx * rs);
                sd += gamma[ch] * gb;
                sdx += gamma[ch] * gx * rs;
            }
            const double md = sd / cnt, mdx = sdx / cnt;
            /* dx = A dy + B x + C per channel */
            const float B = (float)(-rs * rs * mdx), C = (float)(-rs * md + rs * rs * mdx * mu);
            for (int ch = k * cg; ch < (k + 1) * cg; ch++) {
                const size_t at = ((size_t)ch * n + i) * hw;
                const float A = rs * gamma[ch];
                for (int p = 0; p < hw; p++) dx[at + p] = A * dy[at + p] + B * x[at + p] + C;
            }
        }
}

void fm_upsample2_forward(float *y, const float *x, int planes, int h, int w)
{
    for (size_t q = 0; q < (size_t)planes * h; q++) { /* one input row makes two output rows */
        const float *xr = x + q * w;
        float *y0 = y + 2 * q * 2 * w, *y1 = y0 + 2 * w;
        for (int k = 0; k < w; k++) y0[2 * k] = y0[2 * k + 1] = xr[k];
        memcpy(y1, y0, sizeof(float) * 2 * (size_t)w);
    }
}

void fm_upsample2_backward(float *dx, const float *dy, int planes, int h, int w)
{
    for (size_t q = 0; q < (size_t)planes * h; q++) {
        const float *y0 = dy + 2 * q * 2 * w, *y1 = y0 + 2 * w;
        float *xr = dx + q * w;
        for (int k = 0; k < w; k++) xr[k] = (y0[2 * k] + y0[2 * k + 1]) + (y1[2 * k] + y1[2 * k + 1]);
    }
}
