/* The U-Net behind the model interface: its tensor names and shapes (DESIGN.md section 6), its
 * initialisation, a microbatch giving each image what it gives alone, the gradient of a tiny
 * whole U-Net against central finite differences, and the refusals of shapes it cannot take. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/model.h"
#include "fm/rng.h"

static void configure(fm_config *c, const char *const kv[][2])
{
    char err[512];
    fm_config_defaults(c);
    for (int k = 0; kv[k][0]; k++) CHECK(fm_config_set(c, kv[k][0], kv[k][1], err, sizeof err) == 0, "%s", err);
}

static void build(fm_model *m, const char *const kv[][2])
{
    fm_config c;
    char err[512];
    configure(&c, kv);
    CHECK(fm_model_build(m, &c, err, sizeof err) == 0, "%s", err);
}

static const fm_tensor *tensor(const fm_model *m, const char *name)
{
    for (int k = 0; k < m->ntensors; k++)
        if (strcmp(m->tensors[k].name, name) == 0) return &m->tensors[k];
    return NULL;
}

/* A tiny U-Net: 2 channels of 4 x 4, two levels, one block per level, 3 classes. */
static const char *const tiny[][2] = {
    {"model.type", "unet"}, {"data.shape", "2,4,4"}, {"data.dim", "32"}, {"model.channels", "4,6"},
    {"model.res_blocks", "1"}, {"model.groups", "2"}, {"model.time_embed", "fourier"}, {"model.t_dim", "4"},
    {"model.classes", "3"}, {"model.y_dim", "3"}, {NULL, NULL}};

typedef struct {
    fm_model_work *w;
    const float *x, *t, *r;
    const int *y;
    int n, dim;
} probe;

/* sum(r . u(x, t, y)) at params p. */
static double loss(const probe *q, const float *p)
{
    fm_model_changed(q->w);
    fm_model_prepare(q->w, p);
    const fm_model_in in = {q->x, q->t, 0.0f, q->y, q->n};
    const float *out = fm_model_forward(q->w, p, &in);
    double s = 0;
    for (int k = 0; k < q->n * q->dim; k++) s += (double)q->r[k] * out[k];
    return s;
}

static void check_gradient(void)
{
    fm_model m;
    build(&m, tiny);
    enum { N = 3 };
    const int D = m.dim;
    float *p = malloc(sizeof(float) * m.nparams), *grad = calloc(m.nparams, sizeof(float));
    float x[N * 32], r[N * 32], t[N] = {0.1f, 0.5f, 0.9f};
    const int y[N] = {0, 2, 3}; /* 3: no label */
    m.ops->init(p, &m, 7);
    /* GroupNorm's weights and biases away from 1 and 0, so that their gradients are tested too */
    for (int k = 0; k < m.ntensors; k++)
        if (strstr(m.tensors[k].name, "n1/") || strstr(m.tensors[k].name, "n2/") || strstr(m.tensors[k].name, "init_n/"))
            for (size_t i = 0; i < m.tensors[k].count; i++) p[m.tensors[k].offset + i] += 0.3f * ((float)(i % 3) - 1.0f);
    fm_rng_normal(x, 11, 0, 0, FM_STREAM_EVAL, N * D);
    fm_rng_normal(r, 12, 0, 0, FM_STREAM_EVAL, N * D);
    fm_model_work *w = fm_model_work_new(&m, N, 1);
    const probe q = {w, x, t, r, y, N, D};
    loss(&q, p);
    fm_model_backward(grad, w, p, r, N, NULL, NULL);
    /* Central differences in float with a step of 1e-2 on every tensor's entries: the misfit
     * relative to the gradient's scale. */
    double worst = 0, scale = 0;
    for (size_t k = 0; k < m.nparams; k++) scale = fmax(scale, fabs(grad[k]));
    const fm_tensor *worst_t = NULL;
    for (int k = 0; k < m.ntensors; k++) {
        const fm_tensor *tn = &m.tensors[k];
        const size_t step = tn->count > 12 ? tn->count / 12 : 1;
        for (size_t i = 0; i < tn->count; i += step) {
            float *e = p + tn->offset + i;
            const float e0 = *e, h = 1e-2f;
            *e = e0 + h;
            const double lp = loss(&q, p);
            *e = e0 - h;
            const double lm = loss(&q, p);
            *e = e0;
            const double fd = (lp - lm) / (2.0 * h), mis = fabs(fd - grad[tn->offset + i]) / (0.01 * scale + fabs(fd));
            if (mis > worst) worst = mis, worst_t = tn;
        }
    }
    CHECK(worst < 2e-2, "U-Net gradient misfit %.3g (worst in %s)", worst, worst_t ? worst_t->name : "-");
    fm_model_work_free(w);
    free(p);
    free(grad);
    fm_model_free(&m);
}

/* Each image of a microbatch gets what it gets alone (GroupNorm is per image), and the default
 * U-Net's size and names are DESIGN.md's. */
static void check_shapes_and_batching(void)
{
    fm_model m;
    build(&m, tiny);
    const fm_tensor *t;
    CHECK((t = tensor(&m, "init/weight")) && t->rank == 4 && t->shape[0] == 4 && t->shape[1] == 2 && t->shape[2] == 3,
          "init/weight [c_0, C, 3, 3]");
    CHECK((t = tensor(&m, "enc/0/0/ta/2/weight")) && t->shape[0] == 4 && t->shape[1] == 4, "enc/0/0/ta/2/weight [c_0, t_dim]");
    CHECK((t = tensor(&m, "ye/weight")) && t->shape[0] == 4 && t->shape[1] == 3, "ye/weight [K + 1, y_dim]");
    CHECK(tensor(&m, "down/0/bias") && tensor(&m, "mid/0/c2/weight") && tensor(&m, "up/0/weight") &&
              tensor(&m, "dec/0/0/ya/0/bias") && tensor(&m, "final/weight") && tensor(&m, "te/w") &&
              tensor(&m, "init_n/bias") && !tensor(&m, "enc/1/0/c1/weight"),
          "the module paths of DESIGN.md section 6");
    float *p = malloc(sizeof(float) * m.nparams);
    m.ops->init(p, &m, 3);
    t = tensor(&m, "enc/0/0/n1/weight");
    CHECK(p[t->offset] == 1.0f && p[tensor(&m, "enc/0/0/n1/bias")->offset] == 0.0f, "GroupNorm init 1, 0");
    t = tensor(&m, "mid/0/c1/weight"); /* fan_in 6 * 9 */
    float lo = 1, hi = -1;
    for (size_t i = 0; i < t->count; i++) lo = fminf(lo, p[t->offset + i]), hi = fmaxf(hi, p[t->offset + i]);
    CHECK(lo >= -1 / sqrtf(54.0f) && hi <= 1 / sqrtf(54.0f) && hi - lo > 1 / sqrtf(54.0f), "conv init U(+-1/sqrt(fan_in)): %g %g",
          lo, hi);
    /* 20 images: ten chunks of the U-Net's 2 (the gradient test's 3 end with a partial one) */
    enum { N = 20 };
    float x[N * 32], tt[N], r[N * 32];
    int y[N];
    fm_rng_normal(x, 13, 0, 0, FM_STREAM_EVAL, N * 32);
    fm_rng_normal(r, 15, 0, 0, FM_STREAM_EVAL, N * 32);
    fm_rng_uniform(tt, 14, 0, 0, FM_STREAM_EVAL, N);
    for (int i = 0; i < N; i++) y[i] = i % 4;
    fm_model_work *w = fm_model_work_new(&m, N, 1);
    fm_model_prepare(w, p);
    float all[N * 32];
    float *g_all = calloc(m.nparams, sizeof(float)), *g_one = calloc(m.nparams, sizeof(float));
    memcpy(all, fm_model_forward(w, p, &(fm_model_in){x, tt, 0.0f, y, N}), sizeof all);
    fm_model_backward(g_all, w, p, r, N, NULL, NULL);
    double worst = 0, gworst = 0, gscale = 0;
    for (int i = 0; i < N; i++) {
        const float *one = fm_model_forward(w, p, &(fm_model_in){x + i * 32, tt + i, 0.0f, y + i, 1});
        for (int k = 0; k < 32; k++) worst = fmax(worst, fabs(one[k] - all[i * 32 + k]));
        fm_model_backward(g_one, w, p, r + i * 32, 1, NULL, NULL);
    }
    for (size_t k = 0; k < m.nparams; k++) gscale = fmax(gscale, fabs(g_all[k]));
    for (size_t k = 0; k < m.nparams; k++) gworst = fmax(gworst, fabs(g_all[k] - g_one[k]) / gscale);
    CHECK(worst < 1e-5, "an image in a microbatch of %d differs from itself alone by %g", N, worst);
    CHECK(gworst < 1e-5, "the gradient of %d images at once differs from the sum of theirs alone by %g", N, gworst);
    fm_model_work_free(w);
    free(g_all);
    free(g_one);
    free(p);
    fm_model_free(&m);

    /* lab 3's MNIST U-Net: 1.23 M parameters, about 362 MFLOP per image forward */
    const char *const lab3[][2] = {{"model.type", "unet"}, {"data.shape", "1,28,28"}, {"data.dim", "784"},
                                   {"model.time_embed", "fourier"}, {"model.classes", "10"}, {NULL, NULL}};
    build(&m, lab3);
    double fwd, bwd;
    m.ops->flops(&fwd, &bwd, &m);
    CHECK(m.nparams > 1200000 && m.nparams < 1260000 && fwd > 355e6 && fwd < 370e6, "lab 3's U-Net: %zu parameters, %.1f MFLOP",
          m.nparams, fwd / 1e6);
    fm_model_free(&m);
}

static void expect_refused(const char *const kv[][2], const char *needle)
{
    fm_config c;
    configure(&c, kv);
    char err[512] = "";
    fm_model m;
    const int rc = fm_model_build(&m, &c, err, sizeof err);
    CHECK(rc == -1 && strstr(err, needle) && !strchr(err, '\n'), "expected a refusal naming '%s', got %d: %s", needle, rc, err);
    if (rc == 0) fm_model_free(&m);
}

int main(void)
{
    /* Every build of the kernels this machine runs (SSE2, AVX2, AVX-512). */
    check_each_isa(check_shapes_and_batching);
    check_each_isa(check_gradient);
    const char *const odd[][2] = {{"model.type", "unet"}, {"data.shape", "1,28,28"}, {"data.dim", "784"},
                                  {"model.time_embed", "fourier"}, {"model.channels", "8,8,8,8"}, {NULL, NULL}};
    expect_refused(odd, "cannot be halved 3 times");
    const char *const groups[][2] = {{"model.type", "unet"}, {"data.shape", "1,8,8"}, {"data.dim", "64"},
                                     {"model.time_embed", "fourier"}, {"model.channels", "8,12"}, {NULL, NULL}};
    expect_refused(groups, "groups = 8 does not divide channels c_1 = 12");
    const char *const vec[][2] = {{"model.type", "unet"}, {"model.time_embed", "fourier"}, {NULL, NULL}};
    expect_refused(vec, "needs images");
    const char *const raw[][2] = {{"model.type", "unet"}, {"data.shape", "1,8,8"}, {"data.dim", "64"}, {NULL, NULL}};
    expect_refused(raw, "needs time_embed = fourier");
    return check_report("test_unet");
}
