#include "fm/mlp.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/error.h"
#include "fm/kernels.h"
#include "fm/names.h"
#include "fm/rng.h"

/* Offsets in the flat buffer: the layers (weight, then bias, as format 1 had them), then the
 * embeddings. */
static void layout(fm_mlp *m)
{
    m->dims[0] = m->dim + m->t_cols + m->y_cols;
    size_t off = 0;
    for (int l = 0; l < m->nlayers; l++) {
        m->w_off[l] = off;
        off += (size_t)m->dims[l + 1] * m->dims[l];
        m->b_off[l] = off;
        off += (size_t)m->dims[l + 1];
    }
    m->layers_end = m->te_off = off;
    if (m->t_cols > 1) off += (size_t)m->t_cols / 2;
    m->ye_off = off;
    if (m->classes > 0) off += (size_t)(m->classes + 1) * m->y_cols;
    m->nparams = off;
}

int fm_mlp_shape(fm_mlp *m, int dim, const int *hidden, int nhidden, fm_act act)
{
    if (dim < 1 || nhidden < 1 || nhidden + 1 > FM_MLP_MAX_LAYERS) return -1;
    memset(m, 0, sizeof *m);
    m->nlayers = nhidden + 1;
    m->act = act;
    m->dim = dim;
    m->t_cols = 1;
    for (int l = 0; l < nhidden; l++) {
        if (hidden[l] < 1) return -1;
        m->dims[l + 1] = hidden[l];
    }
    m->dims[m->nlayers] = dim;
    layout(m);
    return 0;
}

int fm_mlp_condition(fm_mlp *m, int fourier, int t_dim, int classes, int y_dim)
{
    if ((fourier && (t_dim < 2 || t_dim % 2)) || classes < 0 || (classes > 0 && y_dim < 1)) return -1;
    m->t_cols = fourier ? t_dim : 1;
    m->classes = classes;
    m->y_cols = classes > 0 ? y_dim : 0;
    layout(m);
    return 0;
}

void fm_mlp_init(float *params, const fm_mlp *m, uint64_t seed)
{
    for (int l = 0; l < m->nlayers; l++) {
        const float bound = 1.0f / sqrtf((float)m->dims[l]);
        const int nw = m->dims[l + 1] * m->dims[l], nb = m->dims[l + 1];
        float *w = params + m->w_off[l], *b = params + m->b_off[l];
        fm_rng_uniform(w, seed, 0, (uint32_t)(2 * l), FM_STREAM_INIT, nw);
        fm_rng_uniform(b, seed, 0, (uint32_t)(2 * l + 1), FM_STREAM_INIT, nb);
        for (int i = 0; i < nw; i++) w[i] = bound * (2.0f * w[i] - 1.0f);
        for (int i = 0; i < nb; i++) b[i] = bound * (2.0f * b[i] - 1.0f);
    }
    /* The embeddings ~ N(0, 1) (lab 3's Fourier frequencies, nn.Embedding). */
    const uint32_t next = (uint32_t)(2 * m->nlayers);
    if (m->t_cols > 1) fm_rng_normal(params + m->te_off, seed, 0, next, FM_STREAM_INIT, m->t_cols / 2);
    if (m->classes > 0)
        fm_rng_normal(params + m->ye_off, seed, 0, next + 1, FM_STREAM_INIT, (m->classes + 1) * m->y_cols);
}

static int max_dim(const fm_mlp *m)
{
    int d = 0;
    for (int l = 0; l <= m->nlayers; l++)
        if (m->dims[l] > d) d = m->dims[l];
    return d;
}

/* Row stride of a hidden layer's buffers: a multiple of 64 floats gets 16 more, so that a
 * column block's rows fall in different cache sets (1024 floats per row made the column-wise
 * narrow backward 2.5x slower). The output layer stays dense: forward returns it. */
static int row_stride(int width, int hidden)
{
    return hidden && width >= 64 && width % 64 == 0 ? width + 16 : width;
}

/* Layers served by the thin and the narrow kernels instead of sgemm. A narrow layer's rows are
 * never padded (padding starts at 64 floats), as the narrow kernels assume. */
static int embedded(const fm_mlp *m) { return m->t_cols > 1 || m->classes > 0; }
static int is_thin(const fm_mlp *m, int l) { return l == 0 && !embedded(m) && m->dims[0] <= FM_THIN_INPUT; }
static int is_narrow(const fm_mlp *m, int l) { return !is_thin(m, l) && m->dims[l + 1] <= FM_NARROW_OUTPUT; }

fm_mlp_work *fm_mlp_work_new(const fm_mlp *m, int cap)
{
    fm_mlp_work *w = fm_calloc(sizeof *w);
    w->cap = cap;
    w->in = fm_malloc(sizeof(float) * (size_t)cap * m->dims[0]);
    int maxld = 0;
    /* zeroed: the padding columns are never written, and stay finite for whole-buffer loops */
    for (int l = 0; l < m->nlayers; l++) {
        const int hidden = l < m->nlayers - 1;
        w->ld[l] = row_stride(m->dims[l + 1], hidden);
        if (w->ld[l] > maxld) maxld = w->ld[l];
        w->pre[l] = fm_calloc(sizeof(float) * (size_t)cap * w->ld[l]);
        if (hidden) {
            w->post[l] = fm_calloc(sizeof(float) * (size_t)cap * w->ld[l]);
            w->aux[l] = fm_calloc(sizeof(float) * (size_t)cap * w->ld[l]);
        }
    }
    w->g0 = fm_calloc(sizeof(float) * (size_t)cap * maxld);
    w->g1 = fm_calloc(sizeof(float) * (size_t)cap * maxld);
    w->wt = fm_malloc(sizeof(float) * (size_t)m->dims[0] * m->dims[1]);
    w->w0x = fm_malloc(sizeof(float) * (size_t)m->dims[0] * m->dims[1]);
    w->b0t = fm_malloc(sizeof(float) * (size_t)m->dims[1]);
    w->t_row = fm_malloc(sizeof(float) * (size_t)cap);
    w->y_row = fm_malloc(sizeof(int) * (size_t)cap);
    w->gin = fm_malloc(sizeof(float) * (size_t)cap * (size_t)(m->t_cols + m->y_cols));
    w->pad = fm_malloc(sizeof(float) * ((size_t)32 * max_dim(m) + (size_t)16 * cap));
    for (int l = 0; l < m->nlayers; l++)
        if (is_narrow(m, l)) w->wt16[l] = fm_malloc(sizeof(float) * 16 * (size_t)m->dims[l]);
    return w;
}

void fm_mlp_pack(fm_mlp_work *w, const fm_mlp *m, const float *params)
{
    for (int l = 0; l < m->nlayers; l++)
        if (w->wt16[l]) fm_kern_narrow_pack(w->wt16[l], params + m->w_off[l], m->dims[l], m->dims[l + 1]);
}

void fm_mlp_work_free(fm_mlp_work *w)
{
    if (!w) return;
    free(w->in);
    for (int l = 0; l < FM_MLP_MAX_LAYERS; l++) {
        free(w->pre[l]);
        free(w->post[l]);
        free(w->aux[l]);
        free(w->wt16[l]);
    }
    free(w->wt);
    free(w->w0x);
    free(w->b0t);
    free(w->t_row);
    free(w->y_row);
    free(w->gin);
    free(w->pad);
    free(w->g0);
    free(w->g1);
    free(w);
}

/* Layers first.. of the forward from their input a. */
static const float *forward_layers(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *a, int n,
                                   int first)
{
    int lda = first == 0 ? m->dims[0] : w->ld[first - 1];
    for (int l = first; l < m->nlayers; l++) {
        const int in = m->dims[l], out = m->dims[l + 1];
        const float *W = params + m->w_off[l], *b = params + m->b_off[l];
        float *y = w->pre[l];
        const int act = l < m->nlayers - 1 ? (int)m->act : -1, ld = w->ld[l];
        if (is_thin(m, l)) {
            fm_kern_thin_forward(y, w->post[l], w->aux[l], w->wt, a, W, b, n, in, out, ld, act);
        } else {
            /* y[n, out] = a[n, in] * W[out, in]^T, then bias and activation in one pass */
            if (is_narrow(m, l))
                fm_kern_narrow_forward(y, w->wt16[l], a, n, in, lda, out);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, a, lda, W, in, 0.0f, y, ld);
            fm_kern_bias_act(y, w->post[l], w->aux[l], b, n, out, ld, act);
        }
        a = w->post[l];
        lda = ld;
    }
    return w->pre[m->nlayers - 1];
}

#define TWO_PI 6.28318530717958647692

const float *fm_mlp_forward_cond(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *x,
                                 const float *t, float t_all, const int *y, int n)
{
    FM_CHECK(n <= w->cap, "batch of %d exceeds the work buffers' %d", n, w->cap);
    const int D = m->dim, in = m->dims[0], h = m->t_cols / 2;
    const float *freq = params + m->te_off;
    /* The rows [x | e(t) | e(y)]; t and y kept for the backward. */
    for (int i = 0; i < n; i++) {
        float *row = w->in + (size_t)i * in;
        const float ti = t ? t[i] : t_all;
        w->t_row[i] = ti;
        memcpy(row, x + (size_t)i * D, sizeof(float) * D);
        if (m->t_cols == 1) {
            row[D] = ti;
        } else {
            for (int k = 0; k < h; k++) {
                const double a = TWO_PI * (double)freq[k] * ti;
                row[D + k] = (float)(M_SQRT2 * sin(a));
                row[D + h + k] = (float)(M_SQRT2 * cos(a));
            }
        }
        if (m->classes > 0) {
            const int yi = y ? y[i] : m->classes;
            FM_CHECK(yi >= 0 && yi <= m->classes, "label %d of row %d outside 0..%d", yi, i, m->classes);
            w->y_row[i] = yi;
            memcpy(row + D + m->t_cols, params + m->ye_off + (size_t)yi * m->y_cols, sizeof(float) * m->y_cols);
        }
    }
    return forward_layers(w, m, params, w->in, n, 0);
}

const float *fm_mlp_forward(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *x,
                            const float *t, int n)
{
    return fm_mlp_forward_cond(w, m, params, x, t, 0.0f, NULL, n);
}

const float *fm_mlp_forward_at(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *x, float t,
                               int n)
{
    FM_CHECK(n <= w->cap, "batch of %d exceeds the work buffers' %d", n, w->cap);
    const int dim = m->dim, out = m->dims[1];
    if (!is_thin(m, 0) || dim > FM_THIN_INPUT) return fm_mlp_forward_cond(w, m, params, x, NULL, t, NULL, n);
    /* One t for every row: layer 0 is W[:, :D] x + (b + W[:, D] t), a thin layer of D inputs. */
    const float *W = params + m->w_off[0], *b = params + m->b_off[0];
    for (int j = 0; j < out; j++) {
        memcpy(w->w0x + (size_t)j * dim, W + (size_t)j * (dim + 1), sizeof(float) * dim);
        w->b0t[j] = b[j] + W[(size_t)j * (dim + 1) + dim] * t;
    }
    fm_kern_thin_forward(w->pre[0], w->post[0], w->aux[0], w->wt, x, w->w0x, w->b0t, n, dim, out, w->ld[0],
                         m->nlayers > 1 ? (int)m->act : -1);
    return forward_layers(w, m, params, w->post[0], n, 1);
}

/* The embeddings' gradients from layer 0's: gin[n, E] = g[n, out] W0[:, D:D+E], then the chain
 * rule into te/w (d sqrt2 sin(2 pi w t)/dw = sqrt2 2 pi t cos(.), and -sqrt2 2 pi t sin(.) for
 * the cosines) and into the rows of ye/weight the labels picked. */
static void embed_backward(float *grad, fm_mlp_work *w, const fm_mlp *m, const float *params, const float *g, int ld,
                           int n)
{
    const int D = m->dim, in = m->dims[0], E = in - D, h = m->t_cols / 2;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, E, m->dims[1], 1.0f, g, ld, params + m->w_off[0] + D,
                in, 0.0f, w->gin, E);
    const float *freq = params + m->te_off;
    for (int i = 0; i < n; i++) {
        const float *gi = w->gin + (size_t)i * E;
        for (int k = 0; k < h; k++) { /* Fourier: t_cols > 1 */
            const double a = TWO_PI * (double)freq[k] * w->t_row[i], c = M_SQRT2 * TWO_PI * w->t_row[i];
            grad[m->te_off + k] += (float)(c * (gi[k] * cos(a) - gi[h + k] * sin(a)));
        }
        if (m->classes > 0) {
            float *gy = grad + m->ye_off + (size_t)w->y_row[i] * m->y_cols;
            for (int k = 0; k < m->y_cols; k++) gy[k] += gi[m->t_cols + k];
        }
    }
}

void fm_mlp_backward(float *grad, fm_mlp_work *w, const fm_mlp *m, const float *params,
                     const float *dout, int n, fm_model_grad_done done, void *ctx)
{
    const float *g = dout; /* dL/d(pre[l]) [n, dims[l+1]] */
    for (int l = m->nlayers - 1; l >= 0; l--) {
        const int in = m->dims[l], out = m->dims[l + 1], ld = w->ld[l], lda = l == 0 ? in : w->ld[l - 1];
        const float *a = l == 0 ? w->in : w->post[l - 1], *W = params + m->w_off[l];
        float *dW = grad + m->w_off[l], *db = grad + m->b_off[l];
        float *ga = (g == w->g0) ? w->g1 : w->g0; /* dL/d(pre[l-1]) [n, in] lda */
        if (is_thin(m, l)) {
            fm_kern_thin_weight_grad(dW, db, g, a, n, in, out, ld);
        } else if (l > 0 && is_narrow(m, l)) {
            /* weight and input gradients and act' in one pass over the wide side */
            fm_kern_narrow_backward(dW, ga, w->pad, g, a, W, w->pre[l - 1], w->post[l - 1], w->aux[l - 1], n, in,
                                    lda, out, m->act);
            fm_kern_colsum_add(db, g, n, out, ld);
        } else {
            /* dW[out, in] += g[n, out]^T a[n, in] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, g, ld, a, lda, 1.0f, dW, in);
            fm_kern_colsum_add(db, g, n, out, ld);
            if (l > 0) {
                /* ga[n, in] = g[n, out] W[out, in], then times act'(pre[l-1]) (padding too: it is zero) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, g, ld, W, in, 0.0f, ga, lda);
                fm_kern_act_backward(ga, w->pre[l - 1], w->post[l - 1], w->aux[l - 1], (size_t)n * lda, m->act);
            }
        }
        if (done) done(ctx, m->w_off[l], l == m->nlayers - 1 ? m->layers_end : m->w_off[l + 1]);
        if (l == 0 && embedded(m)) {
            embed_backward(grad, w, m, params, g, ld, n);
            if (done) done(ctx, m->layers_end, m->nparams);
        }
        g = ga;
    }
}

const float *fm_mlp_jvp(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *dx, int n)
{
    /* Forward mode: the tangent of layer 0's output is W0[:, :D] dx (t and labels do not move),
     * times act'(pre) after each hidden layer, through the next layer's weight. */
    float *g = w->g0, *next = w->g1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m->dims[1], m->dim, 1.0f, dx, m->dim,
                params + m->w_off[0], m->dims[0], 0.0f, g, w->ld[0]);
    for (int l = 0; l < m->nlayers; l++) {
        if (l > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m->dims[l + 1], m->dims[l], 1.0f, g, w->ld[l - 1],
                        params + m->w_off[l], m->dims[l], 0.0f, next, w->ld[l]);
            float *tmp = g;
            g = next;
            next = tmp;
        }
        if (l < m->nlayers - 1) fm_kern_act_backward(g, w->pre[l], w->post[l], w->aux[l], (size_t)n * w->ld[l], m->act);
    }
    return g;
}

/* ---- behind the model interface ---- */

static int mlp_build(fm_model *model, const fm_config *c, char *err, int cap)
{
    fm_mlp *m = fm_calloc(sizeof *m);
    model->impl = m;
    const int act = fm_names_find(fm_act_name, c->activation);
    if (act < 0 || fm_mlp_shape(m, (int)c->dim, c->hidden.v, c->hidden.n, (fm_act)act)) {
        fm_errorf(err, cap, "[model] hidden = %d layers, activation = %s: not an MLP for data.dim = %ld",
                  c->hidden.n, c->activation, c->dim);
        return -1;
    }
    const int fourier = fm_names_find(fm_model_time_embed_name, c->time_embed) == 1;
    if (fm_mlp_condition(m, fourier, (int)c->t_dim, (int)c->model_classes, (int)c->y_dim)) {
        fm_errorf(err, cap, "[model] t_dim = %ld (time_embed = %s), classes = %ld, y_dim = %ld: allowed: an even t_dim "
                  "of at least 2, y_dim of at least 1", c->t_dim, c->time_embed, c->model_classes, c->y_dim);
        return -1;
    }
    model->dim = (int)c->dim;
    model->classes = m->classes;
    char name[FM_TENSOR_NAME];
    for (int l = 0; l < m->nlayers; l++) {
        const uint64_t wd[2] = {(uint64_t)m->dims[l + 1], (uint64_t)m->dims[l]}, bd[1] = {wd[0]};
        snprintf(name, sizeof name, "layer_%d/weight", l);
        FM_CHECK(fm_model_add_tensor(model, name, 2, wd) == m->w_off[l], "MLP layout: %s", name);
        snprintf(name, sizeof name, "layer_%d/bias", l);
        FM_CHECK(fm_model_add_tensor(model, name, 1, bd) == m->b_off[l], "MLP layout: %s", name);
    }
    if (m->t_cols > 1) {
        const uint64_t td[2] = {1, (uint64_t)m->t_cols / 2};
        FM_CHECK(fm_model_add_tensor(model, "te/w", 2, td) == m->te_off, "MLP layout: te/w");
    }
    if (m->classes > 0) {
        const uint64_t yd[2] = {(uint64_t)m->classes + 1, (uint64_t)m->y_cols};
        FM_CHECK(fm_model_add_tensor(model, "ye/weight", 2, yd) == m->ye_off, "MLP layout: ye/weight");
    }
    FM_CHECK(model->nparams == m->nparams, "MLP layout: %zu parameters, tensors cover %zu", m->nparams,
             model->nparams);
    return 0;
}

static void mlp_init(float *params, const fm_model *model, uint64_t seed) { fm_mlp_init(params, model->impl, seed); }

static void mlp_flops(double *fwd, double *bwd, const fm_model *model)
{
    const fm_mlp *m = model->impl;
    *fwd = *bwd = 0.0;
    for (int l = 0; l < m->nlayers; l++) {
        const double f = 2.0 * m->dims[l] * m->dims[l + 1];
        *fwd += f;
        *bwd += l > 0 ? 2.0 * f : f; /* weight and input gradients; no input gradient for layer 0 */
    }
}

static void mlp_describe(char *out, int cap, const fm_model *model)
{
    const fm_mlp *m = model->impl;
    int len = snprintf(out, (size_t)cap, "%d", m->dims[0]);
    for (int l = 1; l <= m->nlayers && len < cap; l++) len += snprintf(out + len, (size_t)(cap - len), "-%d", m->dims[l]);
    if (len < cap) len += snprintf(out + len, (size_t)(cap - len), " %s", fm_act_name(m->act));
    if (m->t_cols > 1 && len < cap) len += snprintf(out + len, (size_t)(cap - len), ", fourier t %d", m->t_cols);
    if (m->classes > 0 && len < cap) snprintf(out + len, (size_t)(cap - len), ", %d classes y %d", m->classes, m->y_cols);
}

static void *mlp_work_new(const fm_model *model, int cap, int backward)
{
    (void)backward; /* its activations are one set per cap samples either way */
    return fm_mlp_work_new(model->impl, cap);
}
static void mlp_work_free(void *w) { fm_mlp_work_free(w); }
static void mlp_prepare(void *w, const fm_model *model, const float *params) { fm_mlp_pack(w, model->impl, params); }

static const float *mlp_forward(void *w, const fm_model *model, const float *params, const fm_model_in *in)
{
    if (!in->t && !in->y) return fm_mlp_forward_at(w, model->impl, params, in->x, in->t_all, in->n);
    return fm_mlp_forward_cond(w, model->impl, params, in->x, in->t, in->t_all, in->y, in->n);
}

static void mlp_backward(float *grad, void *w, const fm_model *model, const float *params, const float *dout, int n,
                         fm_model_grad_done done, void *ctx)
{
    fm_mlp_backward(grad, w, model->impl, params, dout, n, done, ctx);
}

static const float *mlp_jvp(void *w, const fm_model *model, const float *params, const float *dx, int n)
{
    return fm_mlp_jvp(w, model->impl, params, dx, n);
}

const fm_model_ops fm_mlp_ops = {
    .name = "mlp",
    .build = mlp_build,
    .free_impl = free,
    .init = mlp_init,
    .flops = mlp_flops,
    .describe = mlp_describe,
    .work_new = mlp_work_new,
    .work_free = mlp_work_free,
    .prepare = mlp_prepare,
    .forward = mlp_forward,
    .backward = mlp_backward,
    .jvp = mlp_jvp,
};
