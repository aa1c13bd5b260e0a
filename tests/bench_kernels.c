/* fmbench_kernels: each kernel under each build of the kernels this CPU runs (include/fm/isa.h),
 * at the shapes the jobs run: ns per element (median of 5 timings of at least 20 ms each) and the
 * ratio to the widest build. Not a test: it prints figures.
 *
 *   fmbench_kernels            (tests/bench.sh --kernels runs it)
 *
 * Shapes: the seed MLP (jobs/gmm11.ini: 3 -> 1024 -> 16 -> 2, microbatch 64, rows padded to 1040),
 * the Fashion U-Net's convolutions (jobs/fashion-unet.ini: 32, 64 and 128 channels at 28 x 28,
 * 14 x 14 and 7 x 7, microbatch 32; its last conv to one channel), draws of 1000 rows of 2 normals, and the
 * OT assignment of a global batch of 1000 (the seed's draws). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/clock.h"
#include "fm/conv.h"
#include "fm/coupling.h"
#include "fm/fpmode.h"
#include "fm/isa.h"
#include "fm/kernels.h"
#include "fm/rng.h"

enum { N = 64, IN = 3, H = 1024, LD = 1040, OUT = 16, BIG = 1 << 20, OTN = 1000, IMG = 32 };

static float *a, *b, *c, *d, *e, *f, *w;
static double s1, s2;
static int64_t *acc;
static fm_conv conv28, conv14, conv7, few28;
static float *cx, *cy, *cw, *cpack, *cpad, *cdyt, *cdw, *cdb;
static fm_assign_work *ot;
static double *otcost;
static int *otcol;

static void k_silu(void) { fm_kern_silu(b, a, BIG); }
static void k_silu_sums(void) { fm_kern_silu_sums(b, &s1, &s2, a, BIG); }
static void k_silu_grad(void) { fm_kern_silu_grad(c, NULL, b, a, BIG); }
static void k_absmax(void) { s1 += fm_kern_absmax(a, BIG); }
static void k_fixed_add(void) { fm_kern_fixed_add(acc, a, 1e6, BIG); }
static void k_fixed_to_float(void) { fm_kern_fixed_to_float(b, acc, 1e-6, BIG); }
static void k_add(void) { fm_kern_add(b, a, BIG); }
static void k_bias_act(void) { memcpy(b, a, sizeof(float) * N * LD), fm_kern_bias_act(b, c, d, w, N, H, LD, FM_ACT_SILU); }
static void k_act_backward(void) { fm_kern_act_backward(e, b, c, d, (size_t)N * LD, FM_ACT_SILU); }
static void k_thin_forward(void) { fm_kern_thin_forward(b, c, d, f, a, w, w, N, IN, H, LD, FM_ACT_SILU); }
static void k_thin_grad(void) { fm_kern_thin_weight_grad(f, f + 4 * H, e, a, N, IN, H, LD); }
static void k_narrow_forward(void) { fm_kern_narrow_forward(b, f, c, N, H, LD, OUT); }
static void k_narrow_backward(void)
{
    fm_kern_narrow_backward(f, e, f + 20 * H, b, c, w, a, c, d, N, H, LD, OUT, FM_ACT_SILU);
}
static void k_colsum(void) { fm_kern_colsum_add(f, e, N, H, LD); }
static void k_normal_rows(void) { fm_rng_normal_rows(b, 1, 2, 0, FM_STREAM_X0, OTN, 2); }
static void k_uniform_rows(void) { fm_rng_uniform_rows(b, 1, 2, 0, FM_STREAM_T, OTN); }
static void k_conv28(void) { fm_conv_direct(cy, cpad, &conv28, cx, cpack, cw, IMG, 0); }
static void k_conv14(void) { fm_conv_direct(cy, cpad, &conv14, cx, cpack, cw, IMG, 0); }
static void k_conv7(void) { fm_conv_direct(cy, cpad, &conv7, cx, cpack, cw, IMG, 0); }
static void k_wgrad28(void) { fm_conv_direct_wgrad(cdw, cdb, cdyt, cpad, &conv28, cx, cy, IMG); }
static void k_few28(void) { fm_conv_direct_few(cy, cpad, &few28, cx, cw, cw, IMG); }
static void k_ot(void)
{
    memcpy(ot->cost, otcost, sizeof(double) * OTN * OTN);
    s1 += fm_assign_solve(otcol, ot, OTN);
}

static const struct {
    const char *name;
    void (*fn)(void);
    double elements; /* per call, the unit of the ns column */
    const char *unit;
} kernels[] = {
    {"silu", k_silu, BIG, "value"},
    {"silu_sums", k_silu_sums, BIG, "value"},
    {"silu_grad", k_silu_grad, BIG, "value"},
    {"absmax", k_absmax, BIG, "value"},
    {"fixed_add", k_fixed_add, BIG, "value"},
    {"fixed_to_float", k_fixed_to_float, BIG, "value"},
    {"add", k_add, BIG, "value"},
    {"bias_act (silu), 64 x 1024", k_bias_act, N * H, "value"},
    {"act_backward (silu), 64 x 1040", k_act_backward, N * LD, "value"},
    {"thin_forward 3 -> 1024, 64 rows", k_thin_forward, N * H * IN, "FMA"},
    {"thin_weight_grad 3 -> 1024", k_thin_grad, N * H * IN, "FMA"},
    {"narrow_forward 1024 -> 16", k_narrow_forward, N * H * OUT, "FMA"},
    {"narrow_backward 1024 -> 16", k_narrow_backward, 2.0 * N * H * OUT, "FMA"},
    {"colsum_add 64 x 1024", k_colsum, N * H, "value"},
    {"rng normal_rows 1000 x 2", k_normal_rows, 2 * OTN, "value"},
    {"rng uniform_rows 1000", k_uniform_rows, OTN, "value"},
    {"conv direct 32 -> 32, 28 x 28", k_conv28, 32.0 * 32 * 9 * 28 * 28 * IMG, "FMA"},
    {"conv direct 64 -> 64, 14 x 14", k_conv14, 64.0 * 64 * 9 * 14 * 14 * IMG, "FMA"},
    {"conv direct 128 -> 128, 7 x 7", k_conv7, 128.0 * 128 * 9 * 7 * 7 * IMG, "FMA"},
    {"conv wgrad 32 -> 32, 28 x 28", k_wgrad28, 32.0 * 32 * 9 * 28 * 28 * IMG, "FMA"},
    {"conv few 32 -> 1, 28 x 28", k_few28, 32.0 * 9 * 28 * 28 * IMG, "FMA"},
    {"OT assignment, batch 1000", k_ot, OTN, "row"},
};
enum { NK = sizeof kernels / sizeof kernels[0] };

static int cmp(const void *x, const void *y)
{
    const double u = *(const double *)x, v = *(const double *)y;
    return u < v ? -1 : u > v;
}

/* ns per element: median of 5 timings, each of as many calls as fill 20 ms */
static double time_kernel(int k)
{
    kernels[k].fn();
    long calls = 1;
    for (;;) {
        const double t = fm_now();
        for (long i = 0; i < calls; i++) kernels[k].fn();
        if (fm_now() - t > 0.02) break;
        calls *= 2;
    }
    double ts[5];
    for (int r = 0; r < 5; r++) {
        const double t = fm_now();
        for (long i = 0; i < calls; i++) kernels[k].fn();
        ts[r] = (fm_now() - t) / (double)calls / kernels[k].elements * 1e9;
    }
    qsort(ts, 5, sizeof ts[0], cmp);
    return ts[2];
}

static float *buffer(size_t n, uint32_t seed)
{
    float *p = malloc(sizeof(float) * n);
    fm_rng_uniform(p, seed, 0, 0, FM_STREAM_EVAL, (int)n);
    for (size_t i = 0; i < n; i++) p[i] = 4.0f * p[i] - 2.0f;
    return p;
}

int main(void)
{
    fm_fpmode_set(); /* as fmtrain: subnormals flushed */
    a = buffer(BIG, 1), b = buffer(BIG, 2), c = buffer(BIG, 3), d = buffer(BIG, 4), e = buffer(BIG, 5);
    f = buffer(BIG, 6), w = buffer(BIG, 7);
    acc = calloc(BIG, sizeof *acc);
    fm_conv_shape(&conv28, 32, 32, 28, 28, 1);
    fm_conv_shape(&conv14, 64, 64, 14, 14, 1);
    fm_conv_shape(&conv7, 128, 128, 7, 7, 1);
    fm_conv_shape(&few28, 32, 1, 28, 28, 1);
    /* one set of buffers for every shape: the largest of each (the packed weights of 128 -> 128
     * serve the smaller convs as well: the values do not matter, only the shapes) */
    cx = buffer(32 * IMG * 28 * 28, 8), cy = buffer(32 * IMG * 28 * 28, 9), cw = buffer(128 * 128 * 9, 10);
    cpack = malloc(sizeof(float) * fm_conv_packed_size(&conv7, 0));
    fm_conv_pack(cpack, &conv7, cw, 0);
    cpad = malloc(sizeof(float) * fm_conv_pad_size(&conv28, IMG, 0));
    cdyt = malloc(sizeof(float) * fm_conv_wgrad_size(&conv28, IMG));
    cdw = calloc(64 * 64 * 9, sizeof(float)), cdb = calloc(64, sizeof(float));
    ot = fm_assign_work_new(OTN);
    otcost = malloc(sizeof(double) * OTN * OTN);
    otcol = malloc(sizeof(int) * OTN);
    float *x0 = malloc(sizeof(float) * 2 * OTN), *z = malloc(sizeof(float) * 2 * OTN);
    fm_rng_normal_rows(x0, 1, 0, 0, FM_STREAM_X0, OTN, 2);
    fm_rng_normal_rows(z, 1, 0, 0, FM_STREAM_Z, OTN, 2);
    for (int i = 0; i < OTN; i++)
        for (int j = 0; j < OTN; j++) {
            const float dx = z[2 * i] * 3.0f - x0[2 * j], dy = z[2 * i + 1] * 3.0f - x0[2 * j + 1];
            otcost[(size_t)i * OTN + j] = dx * dx + dy * dy;
        }
    free(x0), free(z);

    double ns[FM_ISA_COUNT][NK];
    int widest = 0;
    for (int i = 0; i < FM_ISA_COUNT; i++) {
        if (!fm_isa_supported((fm_isa)i)) continue;
        widest = i;
        fm_isa_set((fm_isa)i);
        fm_conv_set_direct(1);
        for (int k = 0; k < NK; k++) ns[i][k] = time_kernel(k);
    }
    printf("ns per element, median of 5; ratio: this build's time over the widest's (%s)\n", fm_isa_name(widest));
    printf("%-34s %-6s", "kernel", "unit");
    for (int i = 0; i < FM_ISA_COUNT; i++)
        if (fm_isa_supported((fm_isa)i)) printf(" %12s %6s", fm_isa_name(i), "ratio");
    printf("\n");
    for (int k = 0; k < NK; k++) {
        printf("%-34s %-6s", kernels[k].name, kernels[k].unit);
        for (int i = 0; i < FM_ISA_COUNT; i++)
            if (fm_isa_supported((fm_isa)i)) printf(" %12.4f %6.2f", ns[i][k], ns[i][k] / ns[widest][k]);
        printf("\n");
    }
    free(a), free(b), free(c), free(d), free(e), free(f), free(w), free(acc);
    free(cx), free(cy), free(cw), free(cpack), free(cpad), free(cdyt), free(cdw), free(cdb);
    fm_assign_work_free(ot), free(otcost), free(otcol);
    return s1 == 12345.0; /* keeps the sums alive */
}
