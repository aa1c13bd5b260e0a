#include "fm/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/conv.h"
#include "fm/error.h"
#include "fm/kernels.h"
#include "fm/names.h"
#include "fm/rng.h"

#define MAX_LEVELS (FM_CONFIG_MAX_LIST - 1)
#define GN_EPS 1e-5f
#define TWO_PI 6.28318530717958647692

/* ---- shape: where each layer's tensors sit in the flat buffer ---- */

typedef struct { size_t w, b; int in, out; } linear; /* weight [out, in], bias [out] */
typedef struct { size_t w, b; fm_conv c; int id; } conv; /* weight [cout, cin, 3, 3], bias [cout]; id: its packs */
typedef struct { size_t w, b; int c, hw; } gnorm;    /* weight, bias [c] */

/* A residual block at c channels: x + c2(n2(silu(c1(n1(silu(x))) + ta(e_t) + ya(e_y)))). */
typedef struct {
    int c, hw;
    gnorm n1, n2;
    conv c1, c2;
    linear ta[2], ya[2]; /* Linear(e -> e), SiLU, Linear(e -> c); ya only with labels */
} block;

/* How init fills a tensor (PyTorch's defaults). */
typedef enum { INIT_UNIFORM, INIT_ONE, INIT_ZERO, INIT_NORMAL } init_kind;
typedef struct { size_t off, count; init_kind kind; int fan_in; } init_rule;

typedef struct {
    int C, H, W, L, R, G, t_dim, y_dim, classes;
    int ch[MAX_LEVELS], h[MAX_LEVELS], w[MAX_LEVELS]; /* level l: c_l channels at h_l x w_l */
    conv init, down[MAX_LEVELS], up[MAX_LEVELS], final;
    gnorm init_n;
    size_t te, ye; /* te/w [1, t_dim / 2]; ye/weight [classes + 1, y_dim] */
    block *blocks; /* enc l (R each, l < L-1), then mid (R), then dec k (R each): nblocks */
    int nblocks;
    conv **convs;  /* every convolution, by id */
    int nconvs;
    init_rule *rules;
    int nrules;
} fm_unet;

/* The index of the first of the R blocks of encoder level l, of the middle, of decoder k. */
static int enc_first(const fm_unet *u, int l) { return l * u->R; }
static int mid_first(const fm_unet *u) { return (u->L - 1) * u->R; }
static int dec_first(const fm_unet *u, int k) { return (u->L + k) * u->R; }

/* Tensor base/leaf, filled by init as kind says. */
static size_t add(fm_model *m, fm_unet *u, const char *base, const char *leaf, int rank, const uint64_t *shape,
                  init_kind kind, int fan_in)
{
    char name[FM_TENSOR_NAME];
    FM_CHECK(snprintf(name, sizeof name, "%s/%s", base, leaf) < (int)sizeof name, "tensor name %s/%s too long", base, leaf);
    const size_t off = fm_model_add_tensor(m, name, rank, shape);
    init_rule *grown = realloc(u->rules, sizeof *grown * (size_t)(u->nrules + 1));
    FM_CHECK(grown, "out of memory for the U-Net's tensors");
    u->rules = grown;
    u->rules[u->nrules++] = (init_rule){off, m->tensors[m->ntensors - 1].count, kind, fan_in};
    return off;
}

static void add_conv(conv *cv, fm_model *m, fm_unet *u, const char *name, int cin, int cout, int h, int w, int stride)
{
    FM_CHECK(fm_conv_shape(&cv->c, cin, cout, h, w, stride) == 0, "conv %s: shape %d->%d %dx%d", name, cin, cout, h, w);
    conv **grown = realloc(u->convs, sizeof *grown * (size_t)(u->nconvs + 1));
    FM_CHECK(grown, "out of memory for the U-Net's convolutions");
    u->convs = grown;
    cv->id = u->nconvs;
    u->convs[u->nconvs++] = cv;
    const uint64_t ws[4] = {(uint64_t)cout, (uint64_t)cin, 3, 3}, bs[1] = {(uint64_t)cout};
    cv->w = add(m, u, name, "weight", 4, ws, INIT_UNIFORM, cin * 9);
    cv->b = add(m, u, name, "bias", 1, bs, INIT_UNIFORM, cin * 9);
}

static void add_gnorm(gnorm *g, fm_model *m, fm_unet *u, const char *name, int c, int hw)
{
    const uint64_t s[1] = {(uint64_t)c};
    g->c = c;
    g->hw = hw;
    g->w = add(m, u, name, "weight", 1, s, INIT_ONE, 0);
    g->b = add(m, u, name, "bias", 1, s, INIT_ZERO, 0);
}

static void add_linear(linear *li, fm_model *m, fm_unet *u, const char *name, int in, int out)
{
    const uint64_t ws[2] = {(uint64_t)out, (uint64_t)in}, bs[1] = {(uint64_t)out};
    li->in = in;
    li->out = out;
    li->w = add(m, u, name, "weight", 2, ws, INIT_UNIFORM, in);
    li->b = add(m, u, name, "bias", 1, bs, INIT_UNIFORM, in);
}

static const char *join(char *n /* [FM_TENSOR_NAME] */, const char *path, const char *sub)
{
    FM_CHECK(snprintf(n, FM_TENSOR_NAME, "%s/%s", path, sub) < FM_TENSOR_NAME, "tensor path %s/%s too long", path, sub);
    return n;
}

static void add_block(block *b, fm_model *m, fm_unet *u, const char *path, int c, int h, int w)
{
    char n[FM_TENSOR_NAME];
    b->c = c;
    b->hw = h * w;
#define SUB(s) join(n, path, s)
    add_gnorm(&b->n1, m, u, SUB("n1"), c, h * w);
    add_conv(&b->c1, m, u, SUB("c1"), c, c, h, w, 1);
    add_gnorm(&b->n2, m, u, SUB("n2"), c, h * w);
    add_conv(&b->c2, m, u, SUB("c2"), c, c, h, w, 1);
    add_linear(&b->ta[0], m, u, SUB("ta/0"), u->t_dim, u->t_dim);
    add_linear(&b->ta[1], m, u, SUB("ta/2"), u->t_dim, c);
    if (u->classes > 0) {
        add_linear(&b->ya[0], m, u, SUB("ya/0"), u->y_dim, u->y_dim);
        add_linear(&b->ya[1], m, u, SUB("ya/2"), u->y_dim, c);
    }
#undef SUB
}

static int unet_build(fm_model *model, const fm_config *c, char *err, int cap)
{
    fm_unet *u = fm_calloc(sizeof *u);
    model->impl = u;
    if (c->shape.n != 3) {
        fm_errorf(err, cap, "[model] type = unet needs images: data.shape = C,H,W (a dataset file of [N, C, H, W]); "
                  "these data are vectors of %ld numbers", c->dim);
        return -1;
    }
    if (fm_names_find(fm_model_time_embed_name, c->time_embed) != 1 || c->t_dim % 2) {
        fm_errorf(err, cap, "[model] time_embed = %s, t_dim = %ld: type = unet needs time_embed = fourier and an even "
                  "t_dim", c->time_embed, c->t_dim);
        return -1;
    }
    u->C = c->shape.v[0], u->H = c->shape.v[1], u->W = c->shape.v[2];
    if ((long)u->C * u->H * u->W != c->dim) {
        fm_errorf(err, cap, "[data] shape = %d,%d,%d but dim = %ld: allowed: C H W = dim", u->C, u->H, u->W, c->dim);
        return -1;
    }
    u->L = c->channels.n, u->R = (int)c->res_blocks, u->G = (int)c->groups;
    u->t_dim = (int)c->t_dim, u->y_dim = (int)c->y_dim, u->classes = (int)c->model_classes;
    const int halve = 1 << (u->L - 1);
    if (u->H % halve || u->W % halve) {
        fm_errorf(err, cap, "[model] channels = %d levels: images of %dx%d cannot be halved %d times; allowed: height "
                  "and width divisible by %d (fewer levels, or padded images)", u->L, u->H, u->W, u->L - 1, halve);
        return -1;
    }
    for (int l = 0; l < u->L; l++) {
        u->ch[l] = c->channels.v[l];
        if (u->ch[l] % u->G) {
            fm_errorf(err, cap, "[model] groups = %d does not divide channels c_%d = %d; allowed: groups dividing every "
                      "entry of model.channels", u->G, l, u->ch[l]);
            return -1;
        }
        u->h[l] = u->H >> l;
        u->w[l] = u->W >> l;
    }
    model->dim = u->C * u->H * u->W;
    model->classes = u->classes;
    u->nblocks = (2 * u->L - 1) * u->R;
    u->blocks = fm_calloc(sizeof *u->blocks * (size_t)u->nblocks);
    /* The tensors, in the order a PyTorch module with these attributes registers them. */
    char path[64];
    add_conv(&u->init, model, u, "init", u->C, u->ch[0], u->H, u->W, 1);
    add_gnorm(&u->init_n, model, u, "init_n", u->ch[0], u->H * u->W);
    const uint64_t ts[2] = {1, (uint64_t)u->t_dim / 2}, ys[2] = {(uint64_t)u->classes + 1, (uint64_t)u->y_dim};
    u->te = add(model, u, "te", "w", 2, ts, INIT_NORMAL, 0);
    if (u->classes > 0) u->ye = add(model, u, "ye", "weight", 2, ys, INIT_NORMAL, 0);
    for (int l = 0; l < u->L - 1; l++) {
        for (int b = 0; b < u->R; b++) {
            snprintf(path, sizeof path, "enc/%d/%d", l, b);
            add_block(&u->blocks[enc_first(u, l) + b], model, u, path, u->ch[l], u->h[l], u->w[l]);
        }
        snprintf(path, sizeof path, "down/%d", l);
        add_conv(&u->down[l], model, u, path, u->ch[l], u->ch[l + 1], u->h[l], u->w[l], 2);
    }
    for (int b = 0; b < u->R; b++) {
        snprintf(path, sizeof path, "mid/%d", b);
        add_block(&u->blocks[mid_first(u) + b], model, u, path, u->ch[u->L - 1], u->h[u->L - 1], u->w[u->L - 1]);
    }
    for (int k = 0; k < u->L - 1; k++) {
        const int l = u->L - 2 - k;
        snprintf(path, sizeof path, "up/%d", k);
        add_conv(&u->up[k], model, u, path, u->ch[l + 1], u->ch[l], u->h[l], u->w[l], 1);
        for (int b = 0; b < u->R; b++) {
            snprintf(path, sizeof path, "dec/%d/%d", k, b);
            add_block(&u->blocks[dec_first(u, k) + b], model, u, path, u->ch[l], u->h[l], u->w[l]);
        }
    }
    add_conv(&u->final, model, u, "final", u->ch[0], u->C, u->H, u->W, 1);
    return 0;
}

static void unet_free(void *impl)
{
    fm_unet *u = impl;
    free(u->blocks);
    free(u->rules);
    free(u->convs);
    free(u);
}

/* PyTorch's defaults: conv and linear U(-1/sqrt(fan_in), 1/sqrt(fan_in)), GroupNorm 1 and 0, the
 * embeddings N(0, 1); tensor k from the counter (seed, k). */
static void unet_init(float *params, const fm_model *m, uint64_t seed)
{
    const fm_unet *u = m->impl;
    for (int k = 0; k < u->nrules; k++) {
        const init_rule *r = &u->rules[k];
        float *p = params + r->off;
        switch (r->kind) {
        case INIT_UNIFORM: {
            const float bound = 1.0f / sqrtf((float)r->fan_in);
            fm_rng_uniform(p, seed, 0, (uint32_t)k, FM_STREAM_INIT, (int)r->count);
            for (size_t i = 0; i < r->count; i++) p[i] = bound * (2.0f * p[i] - 1.0f);
            break;
        }
        case INIT_ONE:
            for (size_t i = 0; i < r->count; i++) p[i] = 1.0f;
            break;
        case INIT_ZERO:
            memset(p, 0, sizeof(float) * r->count);
            break;
        case INIT_NORMAL:
            fm_rng_normal(p, seed, 0, (uint32_t)k, FM_STREAM_INIT, (int)r->count);
            break;
        }
    }
}

static double conv_flops(const conv *cv) { return 2.0 * cv->c.cin * 9 * cv->c.cout * cv->c.ho * cv->c.wo; }

static void unet_flops(double *fwd, double *bwd, const fm_model *m)
{
    const fm_unet *u = m->impl;
    double f = conv_flops(&u->init) + conv_flops(&u->final), lin = 0.0;
    for (int l = 0; l < u->L - 1; l++) f += conv_flops(&u->down[l]) + conv_flops(&u->up[l]);
    for (int k = 0; k < u->nblocks; k++) {
        const block *b = &u->blocks[k];
        f += conv_flops(&b->c1) + conv_flops(&b->c2);
        lin += 2.0 * (u->t_dim + b->c) * u->t_dim + (u->classes > 0 ? 2.0 * (u->y_dim + b->c) * u->y_dim : 0.0);
    }
    *fwd = f + lin;
    *bwd = 2.0 * (f + lin) - conv_flops(&u->init); /* weight and input gradients; none into the image */
}

static void unet_describe(char *out, int cap, const fm_model *m)
{
    const fm_unet *u = m->impl;
    int len = snprintf(out, (size_t)cap, "%dx%dx%d channels ", u->C, u->H, u->W);
    for (int l = 0; l < u->L && len < cap; l++) len += snprintf(out + len, (size_t)(cap - len), "%s%d", l ? "," : "", u->ch[l]);
    if (len < cap) len += snprintf(out + len, (size_t)(cap - len), " x%d blocks, %d groups, fourier t %d", u->R, u->G, u->t_dim);
    if (u->classes > 0 && len < cap) snprintf(out + len, (size_t)(cap - len), ", %d classes y %d", u->classes, u->y_dim);
}

/* ---- activations of a microbatch (all [c, n, hw], channel-major) ---- */

typedef struct {
    float *a1, *n1, *h, *a2, *n2, *out; /* silu(x), GN1, c1 + adapters, silu(h), GN2, x + c2 */
    float *m1, *r1, *m2, *r2;           /* GroupNorm statistics [n, G] */
    float *tpre, *tpost, *tout;         /* time adapter: [n, t_dim] twice, [n, c] */
    float *ypre, *ypost, *yout;         /* label adapter likewise */
} block_acts;

/* What the forward of one chunk of up to CHUNK images keeps for its backward. */
typedef struct {
    float *xin;                 /* [C, n, HW] the input images */
    float *y0, *g0, *z0;        /* init conv, its GroupNorm, SiLU */
    float *m0, *r0;
    block_acts *b;              /* [nblocks] */
    float *down[MAX_LEVELS];    /* [c_{l+1}, n, hw_{l+1}] */
    float *upin[MAX_LEVELS];    /* [c_{l+1}, n, hw_l] upsampled input of up/k */
    float *s[MAX_LEVELS];       /* [c_l, n, hw_l] up/k + skip */
    float *fout;                /* [C, n, HW] final conv */
    float *et, *ey, *t_row;     /* [n, t_dim], [n, y_dim], [n] */
    int *y_row;                 /* [n] */
} chunk_acts;

/* A microbatch runs CHUNK images at a time, so that a block's activations stay in L2 from one
 * pass to the next (the Fashion U-Net's sampler, forward evaluations a second on one core: 305-321
 * at 16 images a chunk, 327-333 at 8, 340-353 at 4, 352-418 at 2, 364-366 at 1). */
#define CHUNK 2

typedef struct {
    int cap, nblocks, nconvs, nchunks;
    chunk_acts *acts;           /* [nchunks] */
    chunk_acts *A;              /* the chunk being computed */
    float *out;                 /* [cap, C, HW] the rows returned */
    /* scratch shared by the chunks, sized for one */
    float *g[3];                /* gradient buffers of the largest activation */
    float *dskip[MAX_LEVELS];   /* [c_l, n, hw_l] */
    float *det, *dey;           /* [n, t_dim], [n, y_dim] */
    float *dsum, *dpost;        /* [n, max c], [n, max(t_dim, y_dim)] */
    float *cols;
    /* the direct kernel's weights, per conv id (NULL: im2col and sgemm), and bordered input */
    float **pack, **pack_t;
    char *few;                  /* per conv id: fewer than 16 outputs, by fm_conv_direct_few */
    float *pad, *dyt;
    double *sums;               /* [2, max c, n] GroupNorm's sums */
} unet_work;

static float *buf(size_t n) { return fm_malloc(sizeof(float) * (n ? n : 1)); }

static void acts_new(chunk_acts *A, const fm_unet *u, size_t n)
{
    const size_t HW = (size_t)u->H * u->W, ymax = u->classes > 0 ? (size_t)u->y_dim : 0;
    A->xin = buf(u->C * HW * n);
    A->y0 = buf(u->ch[0] * HW * n), A->g0 = buf(u->ch[0] * HW * n), A->z0 = buf(u->ch[0] * HW * n);
    A->m0 = buf(n * u->G), A->r0 = buf(n * u->G);
    A->b = fm_calloc(sizeof *A->b * (size_t)u->nblocks);
    for (int k = 0; k < u->nblocks; k++) {
        const block *bl = &u->blocks[k];
        block_acts *a = &A->b[k];
        const size_t sz = (size_t)bl->c * bl->hw * n;
        a->a1 = buf(sz), a->n1 = buf(sz), a->h = buf(sz), a->a2 = buf(sz), a->n2 = buf(sz), a->out = buf(sz);
        a->m1 = buf(n * u->G), a->r1 = buf(n * u->G), a->m2 = buf(n * u->G), a->r2 = buf(n * u->G);
        a->tpre = buf(n * u->t_dim), a->tpost = buf(n * u->t_dim), a->tout = buf(n * bl->c);
        a->ypre = buf(n * ymax), a->ypost = buf(n * ymax), a->yout = buf(n * bl->c);
    }
    for (int l = 0; l < u->L - 1; l++) {
        const int lu = u->L - 2 - l; /* up/l works at level lu */
        A->down[l] = buf((size_t)u->ch[l + 1] * u->h[l + 1] * u->w[l + 1] * n);
        A->upin[l] = buf((size_t)u->ch[lu + 1] * u->h[lu] * u->w[lu] * n);
        A->s[l] = buf((size_t)u->ch[lu] * u->h[lu] * u->w[lu] * n);
    }
    A->fout = buf(u->C * HW * n);
    A->et = buf(n * u->t_dim), A->ey = buf(n * ymax), A->t_row = buf(n);
    A->y_row = fm_malloc(sizeof(int) * n);
}

static void acts_free(chunk_acts *A, int nblocks)
{
    free(A->xin), free(A->y0), free(A->g0), free(A->z0), free(A->m0), free(A->r0);
    for (int k = 0; k < nblocks; k++) {
        block_acts *a = &A->b[k];
        free(a->a1), free(a->n1), free(a->h), free(a->a2), free(a->n2), free(a->out);
        free(a->m1), free(a->r1), free(a->m2), free(a->r2);
        free(a->tpre), free(a->tpost), free(a->tout), free(a->ypre), free(a->ypost), free(a->yout);
    }
    free(A->b);
    for (int l = 0; l < MAX_LEVELS; l++) free(A->down[l]), free(A->upin[l]), free(A->s[l]);
    free(A->fout), free(A->et), free(A->ey), free(A->t_row), free(A->y_row);
}

static void *unet_work_new(const fm_model *m, int cap, int backward)
{
    const fm_unet *u = m->impl;
    unet_work *w = fm_calloc(sizeof *w);
    const int cn = cap < CHUNK ? cap : CHUNK; /* images of a chunk */
    const size_t n = (size_t)cn, HW = (size_t)u->H * u->W;
    w->cap = cap;
    w->nblocks = u->nblocks;
    w->nconvs = u->nconvs;
    w->nchunks = backward ? (cap + CHUNK - 1) / CHUNK : 1; /* forwards only: every chunk in one */
    w->acts = fm_calloc(sizeof *w->acts * (size_t)w->nchunks);
    for (int c = 0; c < w->nchunks; c++) acts_new(&w->acts[c], u, n);
    w->out = buf(u->C * HW * (size_t)cap);
    /* the scratch: the largest activation (an upsampled one counts), im2col, direct kernels */
    size_t big = (size_t)u->C * HW, cols = 0, pad = 0, dyt = 0;
    int cmax = u->C;
    for (int l = 0; l < u->L; l++) {
        const size_t lv = (size_t)u->ch[l] * u->h[l] * u->w[l];
        if (lv > big) big = lv;
        if (u->ch[l] > cmax) cmax = u->ch[l];
        if (l < u->L - 1 && (size_t)u->ch[l + 1] * u->h[l] * u->w[l] > big) big = (size_t)u->ch[l + 1] * u->h[l] * u->w[l];
    }
    w->pack = fm_calloc(sizeof *w->pack * (size_t)u->nconvs);
    w->pack_t = fm_calloc(sizeof *w->pack_t * (size_t)u->nconvs);
    w->few = fm_calloc((size_t)u->nconvs);
    for (int k = 0; k < u->nconvs; k++) {
        const fm_conv *c = &u->convs[k]->c;
        if (fm_conv_cols(c, cn) > cols) cols = fm_conv_cols(c, cn);
        w->few[k] = (char)fm_conv_direct_few_ok(c);
        if (w->few[k] && fm_conv_pad_size(c, cn, 0) > pad) pad = fm_conv_pad_size(c, cn, 0);
        for (int t = 0; t < 2; t++) {
            if (!fm_conv_direct_ok(c, t)) continue;
            (t ? w->pack_t : w->pack)[k] = buf(fm_conv_packed_size(c, t));
            if (fm_conv_pad_size(c, cn, t) > pad) pad = fm_conv_pad_size(c, cn, t);
            if (!t && c->stride == 1 && fm_conv_wgrad_size(c, cn) > dyt) dyt = fm_conv_wgrad_size(c, cn);
        }
    }
    const int ymax = u->classes > 0 ? u->y_dim : 0, emax = u->t_dim > ymax ? u->t_dim : ymax;
    for (int k = 0; k < 3; k++) w->g[k] = buf(big * n);
    for (int l = 0; l < u->L - 1; l++) w->dskip[l] = buf((size_t)u->ch[l] * u->h[l] * u->w[l] * n);
    w->det = buf(n * u->t_dim), w->dey = buf(n * ymax);
    w->dsum = buf(n * cmax), w->dpost = buf(n * emax);
    w->sums = fm_malloc(sizeof(double) * 2 * n * (size_t)cmax);
    w->cols = buf(cols);
    w->pad = buf(pad);
    w->dyt = buf(dyt);
    return w;
}

static void unet_work_free(void *impl)
{
    unet_work *w = impl;
    if (!w) return;
    for (int c = 0; c < w->nchunks; c++) acts_free(&w->acts[c], w->nblocks);
    free(w->acts), free(w->out);
    for (int k = 0; k < 3; k++) free(w->g[k]);
    for (int l = 0; l < MAX_LEVELS; l++) free(w->dskip[l]);
    free(w->det), free(w->dey), free(w->dsum), free(w->dpost), free(w->cols);
    for (int k = 0; k < w->nconvs; k++) free(w->pack[k]), free(w->pack_t[k]);
    free(w->pack), free(w->pack_t), free(w->few), free(w->pad), free(w->dyt), free(w->sums);
    free(w);
}

/* The direct kernel's packs of the weights (forward, and transposed for the input gradients). */
static void unet_prepare(void *impl, const fm_model *m, const float *params)
{
    const fm_unet *u = m->impl;
    unet_work *w = impl;
    for (int k = 0; k < u->nconvs; k++) {
        const conv *cv = u->convs[k];
        if (w->pack[k]) fm_conv_pack(w->pack[k], &cv->c, params + cv->w, 0);
        if (w->pack_t[k]) fm_conv_pack(w->pack_t[k], &cv->c, params + cv->w, 1);
    }
}

/* ---- element-wise pieces ---- */

/* y[n, out] = x[n, in] W^T + b (the Linear of PyTorch). Plain loops: these products are a few
 * thousand FLOPs, where sgemm's small-matrix path allocates at every call. */
static void linear_forward(float *restrict y, const linear *li, const float *params, const float *restrict x, int n)
{
    const float *W = params + li->w, *b = params + li->b;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < li->out; o++) {
            const float *wo = W + (size_t)o * li->in, *xi = x + (size_t)i * li->in;
            float s = b[o];
            for (int k = 0; k < li->in; k++) s += wo[k] * xi[k];
            y[(size_t)i * li->out + o] = s;
        }
}

/* dW += dy^T x, db += column sums of dy, dx += dy W (when dx is not NULL). */
static void linear_backward(float *grad, float *restrict dx, const linear *li, const float *params,
                            const float *restrict x, const float *restrict dy, int n)
{
    const float *W = params + li->w;
    float *dW = grad + li->w, *db = grad + li->b;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < li->out; o++) {
            const float g = dy[(size_t)i * li->out + o];
            const float *xi = x + (size_t)i * li->in, *wo = W + (size_t)o * li->in;
            float *restrict dwo = dW + (size_t)o * li->in;
            db[o] += g;
            for (int k = 0; k < li->in; k++) dwo[k] += g * xi[k];
            if (dx)
                for (int k = 0; k < li->in; k++) dx[(size_t)i * li->in + k] += g * wo[k];
        }
}

/* An adapter Linear(e -> e), SiLU, Linear(e -> c) on the embeddings e [n, e]. */
static void adapter_forward(float *pre, float *post, float *out, const linear *a, const float *params, const float *e,
                            int n)
{
    linear_forward(pre, &a[0], params, e, n);
    fm_kern_silu(post, pre, (size_t)n * a[0].out);
    linear_forward(out, &a[1], params, post, n);
}

static void adapter_backward(float *grad, float *de, float *dpost, const linear *a, const float *params, const float *e,
                             const float *pre, const float *post, const float *dout, int n)
{
    memset(dpost, 0, sizeof(float) * (size_t)n * a[0].out);
    linear_backward(grad, dpost, &a[1], params, post, dout, n);
    fm_kern_silu_grad(dpost, NULL, dpost, pre, (size_t)n * a[0].out);
    linear_backward(grad, de, &a[0], params, e, dpost, n);
}

static void gnorm_forward(unet_work *w, float *y, float *mean, float *rstd, const gnorm *g, const float *params,
                          const float *x, int n, int groups)
{
    fm_groupnorm_forward(y, mean, rstd, w->sums, x, params + g->w, params + g->b, g->c, n, g->hw, groups, GN_EPS);
}

/* a = silu(x), y = GroupNorm(a): the sums the norm needs made in the pass that writes a. */
static void silu_gnorm_forward(unet_work *w, float *y, float *a, float *mean, float *rstd, const gnorm *g,
                               const float *params, const float *x, int n, int groups)
{
    const size_t planes = (size_t)g->c * n;
    double *sum = w->sums, *sumsq = w->sums + planes;
    for (size_t q = 0; q < planes; q++) fm_kern_silu_sums(a + q * g->hw, &sum[q], &sumsq[q], x + q * g->hw, (size_t)g->hw);
    fm_groupnorm_apply(y, mean, rstd, a, sum, sumsq, params + g->w, params + g->b, g->c, n, g->hw, groups, GN_EPS);
}

static void gnorm_backward(float *grad, float *dx, const gnorm *g, const float *params, const float *dy, const float *x,
                           const float *mean, const float *rstd, int n, int groups)
{
    fm_groupnorm_backward(dx, grad + g->w, grad + g->b, dy, x, params + g->w, mean, rstd, g->c, n, g->hw, groups);
}

/* y = conv(x) (+ its bias when bias): by the direct kernel where it has packs, by the one for few
 * outputs where it applies, else by im2col and sgemm. */
static void conv_forward(unet_work *w, float *y, const conv *cv, const float *params, const float *x, int n, int bias)
{
    const float *b = bias ? params + cv->b : NULL;
    if (w->pack[cv->id]) fm_conv_direct(y, w->pad, &cv->c, x, w->pack[cv->id], b, n, 0);
    else if (w->few[cv->id]) fm_conv_direct_few(y, w->pad, &cv->c, x, params + cv->w, b, n);
    else fm_conv_forward(y, w->cols, &cv->c, x, params + cv->w, b, n);
}

static void conv_backward(unet_work *w, float *grad, float *dx, const conv *cv, const float *params, const float *x,
                          const float *dy, int n)
{
    /* the direct kernels where they apply (stride 1, 16 outputs or more), im2col for the rest */
    const int direct_w = w->pack[cv->id] && cv->c.stride == 1, direct_dx = dx && w->pack_t[cv->id];
    if (direct_w) fm_conv_direct_wgrad(grad + cv->w, grad + cv->b, w->dyt, w->pad, &cv->c, x, dy, n);
    if (!direct_w || (dx && !direct_dx))
        fm_conv_backward(direct_w ? NULL : grad + cv->w, direct_w ? NULL : grad + cv->b, direct_dx ? NULL : dx, w->cols,
                         &cv->c, x, params + cv->w, dy, n);
    if (direct_dx) fm_conv_direct(dx, w->pad, &cv->c, dy, w->pack_t[cv->id], NULL, n, 1);
}

/* ---- the network ---- */

static const float *block_forward(unet_work *w, const fm_unet *u, int k, const float *params, const float *x, int n)
{
    chunk_acts *A = w->A;
    const block *b = &u->blocks[k];
    block_acts *a = &A->b[k];
    silu_gnorm_forward(w, a->n1, a->a1, a->m1, a->r1, &b->n1, params, x, n, u->G);
    conv_forward(w, a->h, &b->c1, params, a->n1, n, 0);
    adapter_forward(a->tpre, a->tpost, a->tout, b->ta, params, A->et, n);
    if (u->classes > 0) adapter_forward(a->ypre, a->ypost, a->yout, b->ya, params, A->ey, n);
    const float *b1 = params + b->c1.b, *b2 = params + b->c2.b;
    for (int ch = 0; ch < b->c; ch++) /* c1's bias, ta(e_t), ya(e_y): one add per image and channel */
        for (int i = 0; i < n; i++) {
            float add = b1[ch] + a->tout[(size_t)i * b->c + ch];
            if (u->classes > 0) add += a->yout[(size_t)i * b->c + ch];
            float *p = a->h + ((size_t)ch * n + i) * b->hw;
            for (int q = 0; q < b->hw; q++) p[q] += add;
        }
    silu_gnorm_forward(w, a->n2, a->a2, a->m2, a->r2, &b->n2, params, a->h, n, u->G);
    conv_forward(w, a->out, &b->c2, params, a->n2, n, 0);
    const size_t plane = (size_t)n * b->hw;
    for (int ch = 0; ch < b->c; ch++) { /* c2's bias and the residual */
        float *o = a->out + ch * plane;
        const float *xc = x + ch * plane, bias = b2[ch];
        for (size_t i = 0; i < plane; i++) o[i] += xc[i] + bias;
    }
    return a->out;
}

/* From dout (the gradient of the block's output) into s1 (the gradient of its input x); s2 is
 * scratch. Returns s1. */
static float *block_backward(float *grad, unet_work *w, const fm_unet *u, int k, const float *params, const float *x,
                             const float *dout, float *s1, float *s2, int n)
{
    chunk_acts *A = w->A;
    const block *b = &u->blocks[k];
    const block_acts *a = &A->b[k];
    const size_t sz = (size_t)b->c * n * b->hw;
    conv_backward(w, grad, s1, &b->c2, params, a->n2, dout, n);
    gnorm_backward(grad, s2, &b->n2, params, s1, a->a2, a->m2, a->r2, n, u->G);
    fm_kern_silu_grad(s2, NULL, s2, a->h, sz); /* dL/dh */
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < b->c; ch++) {
            const float *p = s2 + ((size_t)ch * n + i) * b->hw;
            float s = 0.0f;
            for (int q = 0; q < b->hw; q++) s += p[q];
            w->dsum[(size_t)i * b->c + ch] = s;
        }
    adapter_backward(grad, w->det, w->dpost, b->ta, params, A->et, a->tpre, a->tpost, w->dsum, n);
    if (u->classes > 0) adapter_backward(grad, w->dey, w->dpost, b->ya, params, A->ey, a->ypre, a->ypost, w->dsum, n);
    conv_backward(w, grad, s1, &b->c1, params, a->n1, s2, n);
    gnorm_backward(grad, s2, &b->n1, params, s1, a->a1, a->m1, a->r1, n, u->G);
    fm_kern_silu_grad(s1, dout, s2, x, sz); /* the residual's dout plus the branch's */
    return s1;
}

/* The output of the last of the R blocks from first on. */
static const float *last_out(const unet_work *w, const fm_unet *u, int first_block)
{
    return w->A->b[first_block + u->R - 1].out;
}

/* The forward of one chunk (in->n <= CHUNK images) into its rows out [n, C, HW]. */
static void forward_chunk(unet_work *w, const fm_unet *u, const float *params, const fm_model_in *in, float *out)
{
    chunk_acts *A = w->A;
    const int n = in->n, HW = u->H * u->W, h = u->t_dim / 2;
    /* embeddings: e_t = sqrt 2 [sin 2 pi w t, cos 2 pi w t]; e_y = row y of ye/weight */
    for (int i = 0; i < n; i++) {
        const float ti = in->t ? in->t[i] : in->t_all;
        A->t_row[i] = ti;
        for (int k = 0; k < h; k++) {
            const double a = TWO_PI * (double)params[u->te + k] * ti;
            A->et[(size_t)i * u->t_dim + k] = (float)(M_SQRT2 * sin(a));
            A->et[(size_t)i * u->t_dim + h + k] = (float)(M_SQRT2 * cos(a));
        }
        if (u->classes > 0) {
            const int yi = in->y ? in->y[i] : u->classes;
            FM_CHECK(yi >= 0 && yi <= u->classes, "label %d of row %d outside 0..%d", yi, i, u->classes);
            A->y_row[i] = yi;
            memcpy(A->ey + (size_t)i * u->y_dim, params + u->ye + (size_t)yi * u->y_dim, sizeof(float) * u->y_dim);
        }
    }
    /* rows [n, C, HW] -> [C, n, HW] */
    for (int c = 0; c < u->C; c++)
        for (int i = 0; i < n; i++)
            memcpy(A->xin + ((size_t)c * n + i) * HW, in->x + ((size_t)i * u->C + c) * HW, sizeof(float) * HW);
    conv_forward(w, A->y0, &u->init, params, A->xin, n, 1);
    gnorm_forward(w, A->g0, A->m0, A->r0, &u->init_n, params, A->y0, n, u->G);
    fm_kern_silu(A->z0, A->g0, (size_t)u->ch[0] * n * HW);
    const float *cur = A->z0;
    for (int l = 0; l < u->L - 1; l++) {
        for (int b = 0; b < u->R; b++) cur = block_forward(w, u, enc_first(u, l) + b, params, cur, n);
        conv_forward(w, A->down[l], &u->down[l], params, cur, n, 1);
        cur = A->down[l];
    }
    for (int b = 0; b < u->R; b++) cur = block_forward(w, u, mid_first(u) + b, params, cur, n);
    for (int k = 0; k < u->L - 1; k++) {
        const int l = u->L - 2 - k;
        const size_t sz = (size_t)u->ch[l] * n * u->h[l] * u->w[l];
        fm_upsample2_forward(A->upin[k], cur, u->ch[l + 1] * n, u->h[l + 1], u->w[l + 1]);
        conv_forward(w, A->s[k], &u->up[k], params, A->upin[k], n, 1);
        const float *skip = last_out(w, u, enc_first(u, l));
        for (size_t i = 0; i < sz; i++) A->s[k][i] += skip[i];
        cur = A->s[k];
        for (int b = 0; b < u->R; b++) cur = block_forward(w, u, dec_first(u, k) + b, params, cur, n);
    }
    conv_forward(w, A->fout, &u->final, params, cur, n, 1);
    for (int c = 0; c < u->C; c++) /* [C, n, HW] -> rows */
        for (int i = 0; i < n; i++)
            memcpy(out + ((size_t)i * u->C + c) * HW, A->fout + ((size_t)c * n + i) * HW, sizeof(float) * HW);
}

static const float *unet_forward(void *impl, const fm_model *m, const float *params, const fm_model_in *in)
{
    const fm_unet *u = m->impl;
    unet_work *w = impl;
    const size_t D = (size_t)m->dim;
    for (int c = 0, i0 = 0; i0 < in->n; c++, i0 += CHUNK) {
        const fm_model_in part = {in->x + (size_t)i0 * D, in->t ? in->t + i0 : NULL, in->t_all, in->y ? in->y + i0 : NULL,
                                  in->n - i0 < CHUNK ? in->n - i0 : CHUNK};
        w->A = &w->acts[c < w->nchunks ? c : 0];
        forward_chunk(w, u, params, &part, w->out + (size_t)i0 * D);
    }
    return w->out;
}


/* The first of the three gradient buffers that is neither a nor b. */
static float *other(float *const *g, const float *a, const float *b)
{
    for (int k = 0; k < 3; k++)
        if (g[k] != a && g[k] != b) return g[k];
    FM_FATAL("U-Net backward: no free gradient buffer");
}

/* The backward of blocks first .. first+R-1 (last first), x0 the first one's input. */
static float *blocks_backward(float *grad, unet_work *w, const fm_unet *u, int first, const float *x0,
                              const float *params, float *g, int n)
{
    chunk_acts *A = w->A;
    for (int b = u->R - 1; b >= 0; b--) {
        const float *x = b > 0 ? A->b[first + b - 1].out : x0;
        float *s1 = other(w->g, g, NULL), *s2 = other(w->g, g, s1);
        g = block_backward(grad, w, u, first + b, params, x, g, s1, s2, n);
    }
    return g;
}

/* The backward of one chunk of n images from the gradient of its rows dout [n, C, HW]. */
static void backward_chunk(float *grad, unet_work *w, const fm_unet *u, const float *params, const float *dout, int n)
{
    chunk_acts *A = w->A;
    const int HW = u->H * u->W, L = u->L;
    memset(w->det, 0, sizeof(float) * (size_t)n * u->t_dim);
    if (u->classes > 0) memset(w->dey, 0, sizeof(float) * (size_t)n * u->y_dim);
    float *g = w->g[0];
    for (int c = 0; c < u->C; c++) /* rows -> [C, n, HW] */
        for (int i = 0; i < n; i++)
            memcpy(g + ((size_t)c * n + i) * HW, dout + ((size_t)i * u->C + c) * HW, sizeof(float) * HW);
    /* final's input: the last decoder block's output (the middle's when L = 1) */
    float *d = other(w->g, g, NULL);
    conv_backward(w, grad, d, &u->final, params, last_out(w, u, dec_first(u, L - 2)), g, n);
    g = d;
    for (int k = L - 2; k >= 0; k--) { /* s_k = up_k(upsample(cur)) + skip_l, then R blocks */
        const int l = L - 2 - k;
        g = blocks_backward(grad, w, u, dec_first(u, k), A->s[k], params, g, n);
        memcpy(w->dskip[l], g, sizeof(float) * (size_t)u->ch[l] * n * u->h[l] * u->w[l]);
        float *du = other(w->g, g, NULL), *dc = other(w->g, g, du);
        conv_backward(w, grad, du, &u->up[k], params, A->upin[k], g, n);
        fm_upsample2_backward(dc, du, u->ch[l + 1] * n, u->h[l + 1], u->w[l + 1]);
        g = dc;
    }
    g = blocks_backward(grad, w, u, mid_first(u), L > 1 ? A->down[L - 2] : A->z0, params, g, n);
    for (int l = L - 2; l >= 0; l--) { /* down_l of the skip, whose gradient adds */
        const size_t sz = (size_t)u->ch[l] * n * u->h[l] * u->w[l];
        float *dx = other(w->g, g, NULL);
        conv_backward(w, grad, dx, &u->down[l], params, last_out(w, u, enc_first(u, l)), g, n);
        for (size_t i = 0; i < sz; i++) dx[i] += w->dskip[l][i];
        g = blocks_backward(grad, w, u, enc_first(u, l), l > 0 ? A->down[l - 1] : A->z0, params, dx, n);
    }
    /* init: z0 = silu(GN(conv(x))) */
    float *s = other(w->g, g, NULL);
    fm_kern_silu_grad(s, NULL, g, A->g0, (size_t)u->ch[0] * n * HW);
    float *dy0 = g;
    gnorm_backward(grad, dy0, &u->init_n, params, s, A->y0, A->m0, A->r0, n, u->G);
    conv_backward(w, grad, NULL, &u->init, params, A->xin, dy0, n);
    /* the embeddings: d e_t / d w_k = sqrt 2 2 pi t [cos, -sin]; the labels' rows of ye */
    const int h = u->t_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *gi = w->det + (size_t)i * u->t_dim;
        const double c = M_SQRT2 * TWO_PI * A->t_row[i];
        for (int k = 0; k < h; k++) {
            const double a = TWO_PI * (double)params[u->te + k] * A->t_row[i];
            grad[u->te + k] += (float)(c * (gi[k] * cos(a) - gi[h + k] * sin(a)));
        }
        if (u->classes > 0) {
            float *gy = grad + u->ye + (size_t)A->y_row[i] * u->y_dim;
            for (int k = 0; k < u->y_dim; k++) gy[k] += w->dey[(size_t)i * u->y_dim + k];
        }
    }
}

static void unet_backward(float *grad, void *impl, const fm_model *m, const float *params, const float *dout, int n,
                          fm_model_grad_done done, void *ctx)
{
    unet_work *w = impl;
    for (int c = 0, i0 = 0; i0 < n; c++, i0 += CHUNK) {
        w->A = &w->acts[c];
        backward_chunk(grad, w, m->impl, params, dout + (size_t)i0 * m->dim, n - i0 < CHUNK ? n - i0 : CHUNK);
    }
    if (done) done(ctx, 0, m->nparams);
}

const fm_model_ops fm_unet_ops = {
    .name = "unet",
    .build = unet_build,
    .free_impl = unet_free,
    .init = unet_init,
    .flops = unet_flops,
    .describe = unet_describe,
    .work_new = unet_work_new,
    .work_free = unet_work_free,
    .prepare = unet_prepare,
    .forward = unet_forward,
    .backward = unet_backward,
};
