/* The vector fields the ODE solvers integrate (fm/ode.h), made of a model:
 * - the sampler's: the velocity, guided when the model is conditional (DESIGN.md section 6),
 *       v = u(x, t, K) + w (u(x, t, y) - u(x, t, K)),  K = "no label", w = guidance
 *   (w = 1: the plain conditional field; w = 0: the unconditional one);
 * - the log-likelihood's (DESIGN.md section 7): rows [x, l] of dim + 1 numbers with dx/dt = u(x, t)
 *   (no label) and dl/dt = div u(x, t), exactly (dim Jacobian-vector products) or by Hutchinson's
 *   estimate e^T J e with one fixed probe e per row. Integrated from x at t = 1, l = 0 back to
 *   t = 0: log p_1(x) = log p_0(x_0) + l(0).
 * A guided or likelihood evaluation counts as one function evaluation. Pure numerics. */
#ifndef FM_FIELD_H
#define FM_FIELD_H

#include "fm/model.h"
#include "fm/ode.h"

typedef struct {
    fm_model_work *model;
    const float *params;  /* prepared in model (fm_model_prepare) */
    const int *y;         /* [rows] the labels of the caller's rows, or NULL */
    float guidance;
    const float *probe;   /* [rows, dim] Hutchinson's probes of the caller's rows; NULL: exact divergence */
    int dim, cap;
    int *y_none, *y_rows; /* [cap] every row "no label"; the labels of the rows of a call */
    float *vu, *v;        /* [cap, dim] guidance: the unconditional velocity, the guided one */
    float *xd, *tan, *out; /* [cap, dim] x alone, a tangent; [cap, dim + 1] the likelihood's field */
} fm_field;

fm_field *fm_field_new(const fm_model *m, int cap);
void fm_field_free(fm_field *f);

/* The guided velocity of n rows at time t (or t_row[i]); rows[i]: which caller's row row i is
 * (picks its label); [n, dim] inside f. */
const float *fm_field_velocity(fm_field *f, const float *x /* [n, dim] */, double t, const float *t_row /* [n] */,
                               const int *rows /* [n] */, int n);

/* The two fields as fm_ode_field: width dim, and dim + 1 (the model must have a jvp op). */
fm_ode_field fm_field_velocity_ode(fm_field *f);
fm_ode_field fm_field_logp_ode(fm_field *f);

#endif
