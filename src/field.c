#include "fm/field.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fm/error.h"

fm_field *fm_field_new(const fm_model *m, int cap)
{
    fm_field *f = fm_calloc(sizeof *f);
    const size_t len = (size_t)cap * m->dim;
    f->dim = m->dim;
    f->cap = cap;
    f->guidance = 1.0f;
    f->model = fm_model_work_new(m, cap, 0);
    f->y_none = fm_malloc(sizeof(int) * (size_t)cap);
    f->y_rows = fm_malloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < cap; i++) f->y_none[i] = m->classes;
    f->vu = fm_malloc(sizeof(float) * len);
    f->v = fm_malloc(sizeof(float) * len);
    f->xd = fm_malloc(sizeof(float) * len);
    f->tan = fm_malloc(sizeof(float) * len);
    f->out = fm_malloc(sizeof(float) * (size_t)cap * (m->dim + 1));
    return f;
}

void fm_field_free(fm_field *f)
{
    if (!f) return;
    fm_model_work_free(f->model);
    free(f->y_none);
    free(f->y_rows);
    free(f->vu);
    free(f->v);
    free(f->xd);
    free(f->tan);
    free(f->out);
    free(f);
}

const float *fm_field_velocity(fm_field *f, const float *x, double t, const float *t_row, const int *rows, int n)
{
    FM_CHECK(n <= f->cap, "field of %d rows on buffers of %d", n, f->cap);
    const int classes = f->model->model->classes;
    const int *y = NULL;
    if (classes > 0 && f->y) {
        y = f->y;
        if (rows) {
            for (int i = 0; i < n; i++) f->y_rows[i] = f->y[rows[i]];
            y = f->y_rows;
        }
    }
    fm_model_in in = {x, t_row, (float)t, y, n};
    if (!y || f->guidance == 1.0f) return fm_model_forward(f->model, f->params, &in);
    in.y = f->y_none;
    const float *vu = fm_model_forward(f->model, f->params, &in);
    if (f->guidance == 0.0f) return vu;
    const size_t len = (size_t)n * f->dim;
    memcpy(f->vu, vu, sizeof(float) * len);
    in.y = y;
    const float *vy = fm_model_forward(f->model, f->params, &in);
    for (size_t k = 0; k < len; k++) f->v[k] = f->vu[k] + f->guidance * (vy[k] - f->vu[k]);
    return f->v;
}

static const float *velocity_eval(void *ctx, const float *x, double t, const float *t_row, const int *rows, int n)
{
    return fm_field_velocity(ctx, x, t, t_row, rows, n);
}

fm_ode_field fm_field_velocity_ode(fm_field *f) { return (fm_ode_field){f->dim, velocity_eval, f}; }

static const float *logp_eval(void *ctx, const float *x, double t, const float *t_row, const int *rows, int n)
{
    fm_field *f = ctx;
    const int D = f->dim, W = D + 1;
    for (int i = 0; i < n; i++) memcpy(f->xd + (size_t)i * D, x + (size_t)i * W, sizeof(float) * D);
    const fm_model_in in = {f->xd, t_row, (float)t, NULL, n}; /* no label: the unconditional field */
    const float *v = fm_model_forward(f->model, f->params, &in);
    for (int i = 0; i < n; i++) {
        memcpy(f->out + (size_t)i * W, v + (size_t)i * D, sizeof(float) * D);
        f->out[(size_t)i * W + D] = 0.0f;
    }
    if (f->probe) { /* e^T J e */
        for (int i = 0; i < n; i++)
            memcpy(f->tan + (size_t)i * D, f->probe + (size_t)(rows ? rows[i] : i) * D, sizeof(float) * D);
        const float *jv = fm_model_jvp(f->model, f->params, f->tan, n);
        for (int i = 0; i < n; i++) {
            double s = 0.0;
            for (int c = 0; c < D; c++) s += (double)f->tan[(size_t)i * D + c] * jv[(size_t)i * D + c];
            f->out[(size_t)i * W + D] = (float)s;
        }
        return f->out;
    }
    for (int k = 0; k < D; k++) { /* the trace, a column of J at a time */
        memset(f->tan, 0, sizeof(float) * (size_t)n * D);
        for (int i = 0; i < n; i++) f->tan[(size_t)i * D + k] = 1.0f;
        const float *jv = fm_model_jvp(f->model, f->params, f->tan, n);
        for (int i = 0; i < n; i++) f->out[(size_t)i * W + D] += jv[(size_t)i * D + k];
    }
    return f->out;
}

fm_ode_field fm_field_logp_ode(fm_field *f)
{
    FM_CHECK(f->model->model->ops->jvp, "the model %s has no Jacobian-vector product", f->model->model->ops->name);
    return (fm_ode_field){f->dim + 1, logp_eval, f};
}
