/* Gaussian conditional probability paths x_t = alpha_t z + beta_t x0 (DESIGN.md section 1). */
#ifndef FM_PATH_H
#define FM_PATH_H

typedef enum { FM_PATH_SQRT = 0, FM_PATH_LINEAR = 1, FM_PATH_COSINE = 2 } fm_schedule;

typedef struct {
    fm_schedule schedule;
    double eps;       /* sqrt: beta' = -0.5 / (sqrt(1-t) + eps), keeps the target finite at t -> 1 */
    double sigma_min; /* linear: beta = 1 - (1 - sigma_min) t */
} fm_path;

typedef struct {
    double alpha, beta, dalpha, dbeta;
} fm_path_coef;

fm_path_coef fm_path_coeffs(const fm_path *p, double t);

/* For each sample i: xt_i = alpha z_i + beta x0_i, u_i = alpha' z_i + beta' x0_i, the target
 * velocity in the form that neither cancels nor divides by a vanishing beta. */
void fm_path_sample(float *xt /* [n, dim] */, float *u /* [n, dim] */, const fm_path *p,
                    const float *t /* [n] */, const float *x0 /* [n, dim] */,
                    const float *z /* [n, dim] */, int n, int dim);

/* "sqrt" | "linear" | "cosine" -> schedule; -1 when unknown. */
int fm_path_parse(const char *name);
const char *fm_path_name(fm_schedule s);

#endif
