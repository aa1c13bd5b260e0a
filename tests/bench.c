/* fmbench: speed against the machine's own limit. Not a test: it prints figures.
 *
 *   mpirun -np P fmbench [-c CONFIG | --checkpoint FILE] [--steps N] [--warmup N] [--sample-n N]
 *                        [--json FILE] [--section.key=value ...]
 *
 * With --checkpoint the model, its config and its Adam state come from a checkpoint: the figures
 * are those of a trained model, as users run it (a trained model saturates activations that a
 * fresh one does not).
 * Measures, on the ranks it is launched on: the single-thread cblas_sgemm peak (rank 0, the
 * others waiting), the FLOPs of a training step and the median step time with its split (draw,
 * forward, backward, all-reduce, optimiser), the sampler's trajectory-steps per second, and the
 * peak resident memory per rank. tests/bench.sh runs it on 1 and on all cores and derives the
 * scaling. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "fm/ckpt.h"
#include "fm/clock.h"
#include "fm/comm.h"
#include "fm/data_load.h"
#include "fm/config.h"
#include "fm/error.h"
#include "fm/isa.h"
#include "fm/names.h"
#include "fm/ode.h"
#include "fm/rng.h"
#include "fm/sample_run.h"
#include "fm/train.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The machine's limit: GFLOP/s of a large square sgemm on one thread, median of 5. */
static double sgemm_peak(void)
{
    const int N = 1536;
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N), *c = malloc(sizeof(float) * N * N);
    fm_rng_uniform(a, 1, 0, 0, FM_STREAM_EVAL, N * N);
    fm_rng_uniform(b, 2, 0, 0, FM_STREAM_EVAL, N * N);
    openblas_set_num_threads(1);
    double g[5];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
    for (int r = 0; r < 5; r++) {
        double t = fm_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        g[r] = 2.0 * N * N * (double)N / (fm_now() - t) / 1e9;
    }
    free(a); free(b); free(c);
    return median(g, 5);
}

/* The core's FMA peak for the kernels' build in use: GFLOP/s of 12 independent chains of vector
 * FMAs (latency 4 cycles x 2 or 3 pipes on current cores), median of 5 runs of 0.1 s or so. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FMA_LOOP(NAME, TARGET, VEC, SET1, FMADD, ADD, LANES)                               \
    __attribute__((target(TARGET))) static double NAME(long iters)                        \
    {                                                                                     \
        VEC acc[12], m = SET1(0.999999f), c = SET1(1e-7f);                                \
        for (int k = 0; k < 12; k++) acc[k] = SET1((float)k);                             \
        for (long i = 0; i < iters; i++)                                                  \
            for (int k = 0; k < 12; k++) acc[k] = FMADD(acc[k], m, c);                    \
        VEC s = acc[0];                                                                   \
        for (int k = 1; k < 12; k++) s = ADD(s, acc[k]);                                  \
        float out[LANES];                                                                 \
        memcpy(out, &s, sizeof out);                                                      \
        return 2.0 * LANES * 12 * (double)iters + 0.0 * out[0];                           \
    }
FMA_LOOP(fma16, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16)
FMA_LOOP(fma8, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8)
#endif

static double fma_peak(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    double (*loop)(long) = fm_isa_active() == FM_ISA_AVX512 ? fma16 : fm_isa_active() == FM_ISA_AVX2 ? fma8 : NULL;
    if (!loop) return 0.0;
    double g[5];
    const long iters = 4000000;
    loop(iters / 10);
    for (int r = 0; r < 5; r++) {
        const double t = fm_now(), flops = loop(iters);
        g[r] = flops / (fm_now() - t) / 1e9;
    }
    return median(g, 5);
#else
    return 0.0;
#endif
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    FM_CHECK(f, "cannot read %s", path);
    char *text = fm_calloc(1 << 16);
    const size_t len = fread(text, 1, (1 << 16) - 1, f);
    text[len] = '\0';
    fclose(f);
    return text;
}

int main(int argc, char **argv)
{
    fm_comm_init(&argc, &argv);
    const int rank = fm_comm_rank(), P = fm_comm_size();
    char err[1024];
    int steps = 200, warmup = 20;
    long sample_n = 10000;
    const char *json = NULL, *config = NULL, *checkpoint = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) checkpoint = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sample-n") && i + 1 < argc) sample_n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (strncmp(argv[i], "--", 2) || !strchr(argv[i], '=')) FM_FATAL("fmbench: unexpected argument '%s'", argv[i]);
    }
    /* The config: the checkpoint's (its model trained), or the file's, or the defaults; then the
     * --section.key=value arguments on top. */
    fm_config cfg;
    fm_config_defaults(&cfg);
    fm_ckpt ck = {0};
    if (checkpoint && rank == 0 && fm_ckpt_read(&ck, checkpoint, err, sizeof err)) FM_FATAL("%s", err);
    char *text = checkpoint ? ck.config_text : config ? read_file(config) : NULL;
    long len = text ? (long)strlen(text) : -1;
    fm_comm_bcast(&len, sizeof len);
    if (len >= 0) {
        if (!text) text = fm_calloc((size_t)len + 1);
        fm_comm_bcast(text, (size_t)len + 1);
        if (fm_config_load_string(&cfg, text, checkpoint ? checkpoint : config, err, sizeof err)) FM_FATAL("%s", err);
        if (text != ck.config_text) free(text);
    }
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && strchr(argv[i], '=') && strchr(argv[i], '.')) {
            char key[128];
            const char *eq = strchr(argv[i], '=');
            snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i] - 2), argv[i] + 2);
            if (fm_config_set(&cfg, key, eq + 1, err, sizeof err)) FM_FATAL("%s", err);
        }
    long step0 = checkpoint ? ck.step : 0;
    fm_comm_bcast(&step0, sizeof step0);
    cfg.steps = step0 + warmup + steps;

    /* Training steps, from the checkpoint's parameters and Adam moments when one is given. */
    fm_data data = {0}; /* a dataset file's rows, once per node */
    if (fm_target_needs_data(&cfg)) {
        if (fm_data_load(&data, cfg.data_file, err, sizeof err)) FM_FATAL("%s", err);
        fm_dataset_configure(&cfg, &data.data);
    }
    fm_trainer *tr = fm_trainer_new(&cfg, data.mem ? &data.data : NULL);
    if (checkpoint) {
        const size_t n = tr->model.nparams;
        FM_CHECK(rank != 0 || ck.model.nparams == n, "%s: %zu parameters, the model has %zu", checkpoint,
                 ck.model.nparams, n);
        if (rank == 0) {
            memcpy(tr->params, ck.params, sizeof(float) * n);
            memcpy(tr->m, ck.m, sizeof(float) * n);
            memcpy(tr->v, ck.v, sizeof(float) * n);
        }
        fm_comm_bcast(tr->params, sizeof(float) * n);
        fm_comm_bcast(tr->m, sizeof(float) * n);
        fm_comm_bcast(tr->v, sizeof(float) * n);
        fm_model_changed(tr->work);
        tr->step = step0;
    }
    fm_ckpt_free(&ck);
    for (int s = 0; s < warmup; s++) fm_trainer_step(tr, NULL);
    double *t_step = malloc(sizeof(double) * steps), *parts[6];
    for (int k = 0; k < 6; k++) parts[k] = malloc(sizeof(double) * steps);
    fm_comm_barrier();
    for (int s = 0; s < steps; s++) {
        fm_step_times tm = {0};
        double t0 = fm_now();
        fm_trainer_step(tr, &tm);
        t_step[s] = fm_now() - t0;
        parts[0][s] = tm.draw; parts[1][s] = tm.forward; parts[2][s] = tm.backward;
        parts[3][s] = tm.allreduce; parts[4][s] = tm.optim; parts[5][s] = tm.couple;
    }
    double fwd, bwd;
    tr->model.ops->flops(&fwd, &bwd, &tr->model);
    const double step_flops = (double)cfg.batch * (fwd + bwd);
    double med[7];
    med[0] = median(t_step, steps);
    for (int k = 0; k < 6; k++) med[k + 1] = median(parts[k], steps);
    fm_comm_allreduce_max(med, 7); /* the slowest rank sets the pace */

    /* The sampler: sample_n trajectories of sample.steps, split over the ranks. */
    cfg.sample_n = sample_n;
    const long r0 = sample_n * rank / P, nloc = sample_n * (rank + 1) / P - r0;
    float *x = malloc(sizeof(float) * (size_t)(nloc > 0 ? nloc : 1) * cfg.dim);
    fm_comm_barrier();
    double ts = fm_now();
    int *labels = tr->model.classes > 0 ? malloc(sizeof(int) * (size_t)(nloc > 0 ? nloc : 1)) : NULL;
    if (labels) fm_sample_run_labels(labels, &cfg, tr->model.classes, (uint64_t)r0, (uint64_t)nloc);
    int *nfe = malloc(sizeof(int) * (size_t)(nloc > 0 ? nloc : 1));
    fm_sample_run_integrate(x, nfe, NULL, &cfg, &tr->model, tr->params, labels, (uint64_t)r0, (uint64_t)nloc, 0);
    free(labels);
    double sample_time[2] = {fm_now() - ts, 0.0};
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sample_time[1] = (double)ru.ru_maxrss / 1024.0; /* MB */
    fm_comm_allreduce_max(sample_time, 2);
    /* The limit last, so that its large matrices do not count in the memory above. */
    double peak = 0.0, fpeak = 0.0;
    if (rank == 0) peak = sgemm_peak(), fpeak = fma_peak();
    fm_comm_bcast(&peak, sizeof peak);
    double evals = 0.0; /* field evaluations of all trajectories */
    for (long i = 0; i < nloc; i++) evals += nfe[i];
    free(nfe);
    fm_comm_allreduce_sum_f64(&evals, 1);
    const double sample_flops = evals * fwd;

    if (rank == 0) {
        const double gflops = step_flops / med[0] / 1e9, limit = peak * P;
        char shape[256];
        tr->model.ops->describe(shape, sizeof shape, &tr->model);
        printf("fmbench: %d rank%s x %ld thread%s, model %s %s", P, P > 1 ? "s" : "", cfg.threads,
               cfg.threads > 1 ? "s" : "", tr->model.ops->name, shape);
        printf(", batch %ld, microbatch %ld, overlap %s, %s weights\n", cfg.batch, cfg.microbatch,
               tr->overlap ? "on" : "off", checkpoint ? "trained" : "fresh");
        printf("  kernels %s; FMA peak (1 core)  %8.1f GFLOP/s\n", fm_isa_name(fm_isa_active()), fpeak);
        printf("  sgemm peak (1 thread, %dx%d)   %8.1f GFLOP/s\n", 1536, 1536, peak);
        printf("  step at %.0f%% of %d x the FMA peak; sampler at %.0f%%\n", 100 * gflops / (fpeak * P), P,
               100 * sample_flops / sample_time[0] / 1e9 / (fpeak * P));
        printf("  step FLOPs                      %8.1f MFLOP (FLOP time at %d x peak: %.3f ms); per sample "
               "forward %.3f, backward %.3f MFLOP\n", step_flops / 1e6, P, step_flops / limit / 1e6, fwd / 1e6, bwd / 1e6);
        printf("  step time (median of %d)        %8.3f ms  = %.1f GFLOP/s, %.0f%% of %d x peak\n", steps, med[0] * 1e3,
               gflops, 100 * gflops / limit, P);
        printf("    draw %.3f (OT assignment %.3f)  forward %.3f  backward %.3f  all-reduce %.3f  optimiser %.3f ms\n",
               med[1] * 1e3, med[6] * 1e3, med[2] * 1e3, med[3] * 1e3, med[4] * 1e3, med[5] * 1e3);
        printf("  throughput                      %8.0f samples/s\n", cfg.batch / med[0]);
        printf("  sampler %ld x %.0f %s evaluations %8.3f s   = %.3g evaluations/s, %.1f GFLOP/s, %.0f%% of %d x peak\n",
               sample_n, evals / (double)sample_n, cfg.solver, sample_time[0], evals / sample_time[0],
               sample_flops / sample_time[0] / 1e9, 100 * sample_flops / sample_time[0] / 1e9 / limit, P);
        printf("  peak resident memory per rank   %8.1f MB\n", sample_time[1]);
        if (json) {
            FILE *f = fopen(json, "w");
            FM_CHECK(f, "cannot write %s", json);
            fprintf(f, "{\"ranks\": %d, \"threads\": %ld, \"batch\": %ld, \"microbatch\": %ld, \"overlap\": %d, "
                    "\"model\": \"%s %s\", \"trained_step\": %ld, \"hidden\": \"", P, cfg.threads, cfg.batch,
                    cfg.microbatch, tr->overlap, tr->model.ops->name, shape, step0);
            for (int l = 0; l < cfg.hidden.n; l++) fprintf(f, "%s%d", l ? "," : "", cfg.hidden.v[l]);
            fprintf(f, "\", \"isa\": \"%s\", \"fma_peak_gflops\": %.3f", fm_isa_name(fm_isa_active()), fpeak);
            fprintf(f, ", \"sgemm_peak_gflops\": %.3f, \"step_mflop\": %.3f, \"step_ms\": %.4f, \"step_gflops\": %.3f, "
                    "\"fraction_of_peak\": %.4f, \"draw_ms\": %.4f, \"forward_ms\": %.4f, \"backward_ms\": %.4f, "
                    "\"allreduce_ms\": %.4f, \"optim_ms\": %.4f, \"couple_ms\": %.4f, \"samples_per_s\": %.1f, \"sampler_n\": %ld, "
                    "\"sampler_steps\": %ld, \"sampler_s\": %.4f, \"evaluations_per_s\": %.1f, "
                    "\"sampler_fraction_of_peak\": %.4f, \"peak_rss_mb\": %.2f}\n",
                    peak, step_flops / 1e6, med[0] * 1e3, gflops, gflops / limit, med[1] * 1e3, med[2] * 1e3,
                    med[3] * 1e3, med[4] * 1e3, med[5] * 1e3, med[6] * 1e3, cfg.batch / med[0], sample_n, cfg.sample_steps,
                    sample_time[0], evals / sample_time[0], sample_flops / sample_time[0] / 1e9 / limit,
                    sample_time[1]);
            fclose(f);
        }
    }
    free(x);
    for (int k = 0; k < 6; k++) free(parts[k]);
    free(t_step);
    fm_trainer_free(tr);
    if (data.mem) fm_data_free(&data);
    fm_comm_exit(0);
}
