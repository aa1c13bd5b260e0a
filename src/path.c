#include "fm/path.h"

#include <math.h>
#include <string.h>

fm_path_coef fm_path_coeffs(const fm_path *p, double t)
{
    fm_path_coef c;
    switch (p->schedule) {
    case FM_PATH_LINEAR:
        c.alpha = t;
        c.dalpha = 1.0;
        c.beta = 1.0 - (1.0 - p->sigma_min) * t;
        c.dbeta = -(1.0 - p->sigma_min);
        break;
    case FM_PATH_COSINE:
        c.alpha = sin(0.5 * M_PI * t);
        c.dalpha = 0.5 * M_PI * cos(0.5 * M_PI * t);
        c.beta = cos(0.5 * M_PI * t);
        c.dbeta = -0.5 * M_PI * sin(0.5 * M_PI * t);
        break;
    case FM_PATH_SQRT:
    default: {
        double s = sqrt(fmax(1.0 - t, 0.0));
        c.alpha = t;
        c.dalpha = 1.0;
        c.beta = s;
        c.dbeta = -0.5 / (s + p->eps);
        break;
    }
    }
    return c;
}

void fm_path_sample(float *xt, float *u, const fm_path *p, const float *t, const float *x0,
                    const float *z, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        fm_path_coef c = fm_path_coeffs(p, t[i]);
        const float a = (float)c.alpha, b = (float)c.beta;
        const float da = (float)c.dalpha, db = (float)c.dbeta;
        for (int j = 0; j < dim; j++) {
            const int k = i * dim + j;
            xt[k] = a * z[k] + b * x0[k];
            u[k] = da * z[k] + db * x0[k];
        }
    }
}

static const char *const names[] = {"sqrt", "linear", "cosine"};

int fm_path_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *fm_path_name(fm_schedule s) { return names[s]; }
