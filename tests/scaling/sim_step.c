/* The training step under a simulator: fmtrain's trainer (src/train.c) and its MPI calls
 * (src/comm.c) compiled by SimGrid's smpicc and run by smpirun on a modelled cluster
 * (tests/scaling/run.sh). No files: analytic targets only. Times are MPI_Wtime's, which under
 * SMPI is the simulated clock (computation is measured on this machine and injected at the
 * simulated host's speed).
 *   sim_step CONFIG.ini [--steps N] [--warmup N] [--compute S] [--section.key=value ...]
 * --compute S: no trainer; each step is S seconds a sample of the rank's shard (simulated, at the
 * measured speed of this machine's step) and then the trainer's all-reduce of the gradient: for
 * models whose simulated ranks would not fit in this machine's memory (each holds the model's
 * parameters, gradient, moments and activations).
 * Rank 0 prints one JSON line: ranks, batch, parameters, median step seconds, median seconds of a
 * bare all-reduce of the gradient (nparams + 2 floats). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smpi/smpi.h>

#include "fm/comm.h"
#include "fm/config.h"
#include "fm/error.h"
#include "fm/model.h"
#include "fm/train.h"

/* The gradient ranges the model's backward finishes, in order (the trainer's overlap starts an
 * all-reduce for each), from one backward of one sample. */
typedef struct {
    size_t lo[256], hi[256];
    int n;
} ranges;

static void record(void *ctx, size_t lo, size_t hi)
{
    ranges *r = ctx;
    FM_CHECK(r->n < 256, "sim_step: more than 256 gradient ranges");
    r->lo[r->n] = lo;
    r->hi[r->n++] = hi;
}

static void grad_ranges(ranges *r, const fm_model *m)
{
    float *params = fm_malloc(sizeof(float) * m->nparams), *grad = fm_calloc(sizeof(float) * m->nparams);
    float *x = fm_calloc(sizeof(float) * (size_t)m->dim), *dout = fm_calloc(sizeof(float) * (size_t)m->dim), t = 0.5f;
    m->ops->init(params, m, 1);
    fm_model_work *w = fm_model_work_new(m, 1, 1);
    const fm_model_in in = {x, &t, 0.0f, NULL, 1};
    fm_model_prepare(w, params);
    fm_model_forward(w, params, &in);
    r->n = 0;
    fm_model_backward(grad, w, params, dout, 1, record, r);
    fm_model_work_free(w);
    free(params); free(grad); free(x); free(dout);
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    fm_comm_init(&argc, &argv);
    FM_CHECK(argc >= 2, "usage: sim_step CONFIG.ini [--steps N] [--warmup N] [--section.key=value ...]");
    int steps = 10, warmup = 2;
    double compute = 0.0;
    char err[1024];
    fm_config cfg;
    fm_config_defaults(&cfg);
    FILE *f = fopen(argv[1], "rb");
    FM_CHECK(f, "cannot read %s", argv[1]);
    char *text = fm_calloc(1 << 16);
    text[fread(text, 1, (1 << 16) - 1, f)] = '\0';
    fclose(f);
    if (fm_config_load_string(&cfg, text, argv[1], err, sizeof err)) FM_FATAL("%s", err);
    free(text);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--compute") && i + 1 < argc) {
            compute = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) {
            warmup = atoi(argv[++i]);
        } else {
            const char *eq = strchr(argv[i], '=');
            FM_CHECK(!strncmp(argv[i], "--", 2) && eq, "sim_step: unexpected argument '%s'", argv[i]);
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i] - 2), argv[i] + 2);
            if (fm_config_set(&cfg, key, eq + 1, err, sizeof err)) FM_FATAL("%s", err);
        }
    }
    if (fm_config_validate(&cfg, err, sizeof err)) FM_FATAL("%s", err);
    cfg.steps = warmup + steps;
    fm_trainer *tr = NULL;
    fm_model model = {0};
    const int P = fm_comm_size(), r = fm_comm_rank();
    const long nloc = cfg.batch * (r + 1) / P - cfg.batch * r / P;
    if (compute > 0) {
        if (fm_model_build(&model, &cfg, err, sizeof err)) FM_FATAL("%s", err);
    } else {
        tr = fm_trainer_new(&cfg, NULL);
    }
    const size_t nparams = tr ? tr->model.nparams : model.nparams, n = nparams + FM_NSLOTS;
    /* --compute with train.overlap: the trainer's order of work. Every microbatch but the last
     * one's backward, then that backward (2/3 of its samples' time) range by range, each
     * range's all-reduce started when it is done, then a wait for them all. */
    const int overlap = compute > 0 && !strcmp(cfg.overlap, "on") && P > 1 && cfg.batch >= P;
    ranges rg = {0};
    double bwd_last = 0.0;
    if (overlap) {
        grad_ranges(&rg, &model);
        const long mb = cfg.microbatch < nloc ? cfg.microbatch : nloc;
        bwd_last = (double)(nloc - mb * ((nloc - 1) / mb)) * compute * 2.0 / 3.0;
    }
    float *grad = compute > 0 ? fm_calloc(sizeof(float) * n) : NULL;
    float *buf = fm_calloc(sizeof(float) * n);
    double *t_step = fm_malloc(sizeof(double) * (size_t)steps), *t_ar = fm_malloc(sizeof(double) * (size_t)steps);
    for (int s = 0; s < warmup + steps; s++) {
        fm_comm_barrier();
        const double t0 = fm_comm_time();
        if (tr) {
            fm_trainer_step(tr, NULL);
        } else if (overlap) {
            smpi_execute((double)nloc * compute - bwd_last);
            for (int i = 0; i < rg.n; i++) {
                smpi_execute(bwd_last * (double)(rg.hi[i] - rg.lo[i]) / (double)nparams);
                fm_comm_iallreduce_sum(buf + rg.lo[i], grad + rg.lo[i], (rg.hi[i] == nparams ? n : rg.hi[i]) - rg.lo[i]);
                fm_comm_progress();
            }
            fm_comm_wait();
        } else {
            smpi_execute((double)nloc * compute);
            fm_comm_allreduce_sum(grad, n);
        }
        const double t1 = fm_comm_time();
        fm_comm_barrier();
        const double t2 = fm_comm_time();
        fm_comm_allreduce_sum(buf, n);
        const double t3 = fm_comm_time();
        if (s >= warmup) {
            t_step[s - warmup] = t1 - t0;
            t_ar[s - warmup] = t3 - t2;
        }
    }
    double med[2] = {median(t_step, steps), median(t_ar, steps)};
    fm_comm_allreduce_max(med, 2); /* the slowest rank sets the pace */
    if (fm_comm_rank() == 0)
        printf("{\"ranks\": %d, \"batch\": %ld, \"params\": %zu, \"overlap\": %d, \"modelled_compute\": %d, "
               "\"step_s\": %.9f, \"allreduce_s\": %.9f}\n", P, cfg.batch, nparams, tr ? tr->overlap : overlap, compute > 0,
               med[0], med[1]);
    free(buf);
    free(grad);
    free(t_step);
    free(t_ar);
    fm_trainer_free(tr);
    if (!tr) fm_model_free(&model);
    fm_comm_exit(0);
}
