/* The optimiser over the flat parameter buffer: Adam with PyTorch semantics, gradient norm and
 * clipping, learning-rate schedules. */
#ifndef FM_OPTIM_H
#define FM_OPTIM_H

#include <stddef.h>

typedef struct {
    double lr, beta1, beta2, eps;
    double clip;  /* max global gradient L2 norm; 0 = off */
    int schedule; /* after warmup, index in the schedule list (fm_optim_schedule_name) */
    long warmup;  /* linear warmup steps from lr/warmup to lr */
} fm_optim;

/* "constant" (lr after warmup) "cosine" (decay to 0 at the last step): the list of fm/names.h. */
const char *fm_optim_schedule_name(int i);

/* The learning rate of step `step` (1-based) of a run of `total` steps. */
double fm_optim_lr(const fm_optim *o, long step, long total);

/* One Adam step (step is 1-based, for the bias correction), on n parameters:
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void fm_optim_adam_step(float *p /* [n] */, float *m /* [n] */, float *v /* [n] */,
                        const float *g /* [n] */, size_t n, const fm_optim *o, long step, double lr);

/* The exponential moving average of the weights: ema = decay ema + (1 - decay) p. */
void fm_optim_ema(float *ema /* [n] */, const float *p /* [n] */, size_t n, double decay);

/* L2 norm of g in double; NaN or Inf when any element is. */
double fm_optim_norm(const float *g /* [n] */, size_t n);

/* When clip > 0 and norm > clip, scales g to norm clip. Returns the norm before clipping. */
double fm_optim_clip(float *g /* [n] */, size_t n, double clip);

#endif
