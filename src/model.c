#include "fm/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/error.h"
#include "fm/mlp.h"
#include "fm/names.h"
#include "fm/unet.h"

/* The registry: one line per model. */
static const fm_model_ops *const models[] = {
    &fm_mlp_ops,
    &fm_unet_ops,
};
#define NMODELS ((int)(sizeof models / sizeof models[0]))

const char *fm_model_type_name(int i) { return i >= 0 && i < NMODELS ? models[i]->name : NULL; }

const char *fm_model_time_embed_name(int i)
{
    static const char *const names[] = {"raw", "fourier"};
    return i >= 0 && i < 2 ? names[i] : NULL;
}

int fm_model_build(fm_model *m, const fm_config *c, char *err, int cap)
{
    memset(m, 0, sizeof *m);
    const int i = fm_names_require(fm_model_type_name, c->model_type, "[model] type", err, cap);
    if (i < 0) return -1;
    m->ops = models[i];
    if (m->ops->build(m, c, err, cap)) {
        fm_model_free(m);
        return -1;
    }
    return 0;
}

void fm_model_free(fm_model *m)
{
    if (m->ops && m->impl) m->ops->free_impl(m->impl);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

size_t fm_model_add_tensor(fm_model *m, const char *name, int rank, const uint64_t *shape)
{
    FM_CHECK(rank >= 1 && rank <= FM_TENSOR_RANK, "tensor %s: rank %d out of 1..%d", name, rank, FM_TENSOR_RANK);
    fm_tensor *grown = realloc(m->tensors, sizeof *grown * (size_t)(m->ntensors + 1));
    FM_CHECK(grown, "out of memory for the tensor table");
    m->tensors = grown;
    fm_tensor *t = &m->tensors[m->ntensors++];
    memset(t, 0, sizeof *t);
    FM_CHECK(snprintf(t->name, sizeof t->name, "%s", name) < (int)sizeof t->name, "tensor name %s too long", name);
    t->rank = rank;
    t->count = 1;
    for (int k = 0; k < rank; k++) {
        t->shape[k] = shape[k];
        t->count *= (size_t)shape[k];
    }
    t->offset = m->nparams;
    m->nparams += t->count;
    return t->offset;
}

fm_model_work *fm_model_work_new(const fm_model *m, int cap, int backward)
{
    fm_model_work *w = fm_calloc(sizeof *w);
    w->model = m;
    w->cap = cap;
    w->backward = backward;
    w->impl = m->ops->work_new(m, cap, backward);
    w->version = 1; /* never prepared yet */
    return w;
}

void fm_model_work_free(fm_model_work *w)
{
    if (!w) return;
    w->model->ops->work_free(w->impl);
    free(w);
}

void fm_model_changed(fm_model_work *w) { w->version++; }

void fm_model_prepare(fm_model_work *w, const float *params)
{
    w->model->ops->prepare(w->impl, w->model, params);
    w->prepared = w->version;
}

const float *fm_model_forward(fm_model_work *w, const float *params, const fm_model_in *in)
{
    const fm_model *m = w->model;
    FM_CHECK(w->prepared == w->version, "the forward of %s needs fm_model_prepare after the parameters changed",
             m->ops->name);
    FM_CHECK(in->n <= w->cap, "batch of %d exceeds the work buffers' %d", in->n, w->cap);
    FM_CHECK(!in->y || m->classes > 0, "labels given to an unconditional %s", m->ops->name);
    return m->ops->forward(w->impl, m, params, in);
}

void fm_model_backward(float *grad, fm_model_work *w, const float *params, const float *dout, int n,
                       fm_model_grad_done done, void *ctx)
{
    FM_CHECK(w->backward, "the backward of %s on work made for forwards only", w->model->ops->name);
    w->model->ops->backward(grad, w->impl, w->model, params, dout, n, done, ctx);
}

const float *fm_model_jvp(fm_model_work *w, const float *params, const float *dx, int n)
{
    FM_CHECK(w->model->ops->jvp, "the model %s has no Jacobian-vector product", w->model->ops->name);
    return w->model->ops->jvp(w->impl, w->model, params, dx, n);
}
