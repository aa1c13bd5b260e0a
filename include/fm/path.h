/* Gaussian conditional probability paths x_t = alpha_t z + beta_t x0 (DESIGN.md section 1), and
 * the CFM loss against their target velocity. */
#ifndef FM_PATH_H
#define FM_PATH_H

#include <stdint.h>

typedef struct {
    int schedule;     /* index in the schedule list (fm_path_schedule_name) */
    double eps;       /* sqrt: beta' = -0.5 / (sqrt(1-t) + eps), keeps the target finite at t -> 1 */
    double sigma_min; /* linear: beta = 1 - (1 - sigma_min) t */
} fm_path;

typedef struct {
    double alpha, beta, dalpha, dbeta;
} fm_path_coef;

/* "sqrt" "linear" "cosine": the list of fm/names.h. */
const char *fm_path_schedule_name(int i);

fm_path_coef fm_path_coeffs(const fm_path *p, double t);

/* For each sample i: xt_i = alpha z_i + beta x0_i, u_i = alpha' z_i + beta' x0_i, the target
 * velocity in the form that neither cancels nor divides by a vanishing beta. */
void fm_path_sample(float *xt /* [n, dim] */, float *u /* [n, dim] */, const fm_path *p,
                    const float *t /* [n] */, const float *x0 /* [n, dim] */,
                    const float *z /* [n, dim] */, int n, int dim);

/* The CFM loss of n samples: returns sum ||out - u||^2 and sets dout = 2 scale (out - u). With
 * scale = 1/(B*D) over the global batch B it is DESIGN.md's loss and its gradient. */
double fm_path_loss(float *dout /* [n, dim] */, const float *out /* [n, dim] */,
                    const float *u /* [n, dim] */, int n, int dim, float scale);

/* Training times: "uniform" "logit_normal", the list of fm/names.h. */
const char *fm_path_t_dist_name(int i);

typedef struct {
    int dist;          /* index in fm_path_t_dist_name */
    double mean, std;  /* logit_normal: t = sigmoid(mean + std n), n ~ N(0, 1) */
} fm_path_t_dist;

/* The times of n consecutive samples index0.. of a step, from stream FM_STREAM_T: a pure function
 * of (seed, step, index), in [0, 1). */
void fm_path_draw_t(float *t /* [n] */, const fm_path_t_dist *d, uint64_t seed, uint32_t step, uint32_t index0, int n);

#endif
