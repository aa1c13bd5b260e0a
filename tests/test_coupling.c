/* The exact assignment against brute force on small cases (ties included), an optimality
 * certificate (LP duality) on large ones, and the OT pairing of point sets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/coupling.h"
#include "fm/names.h"
#include "fm/rng.h"

/* The least total over all permutations of n <= 8 (Heap's algorithm). */
static double brute_force(const double *c, int n)
{
    int p[8], k[8] = {0};
    for (int i = 0; i < n; i++) p[i] = i;
    double best = 0.0;
    for (int i = 0; i < n; i++) best += c[i * n + p[i]];
    for (int i = 1; i < n;) {
        if (k[i] < i) {
            const int a = i % 2 ? k[i] : 0, t = p[a];
            p[a] = p[i];
            p[i] = t;
            double s = 0.0;
            for (int r = 0; r < n; r++) s += c[r * n + p[r]];
            if (s < best) best = s;
            k[i]++;
            i = 1;
        } else {
            k[i++] = 0;
        }
    }
    return best;
}

static int is_permutation(const int *col, int n)
{
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        if (col[i] < 0 || col[i] >= n || seen[col[i]]) ok = 0;
        else seen[col[i]] = 1;
    }
    free(seen);
    return ok;
}

/* Duality: with row prices u_i = c[i, col i] - v[col i], every reduced cost c_ij - u_i - v_j is
 * >= 0 and the assigned ones are 0: no other assignment is cheaper. Returns the most negative. */
static double worst_reduced_cost(const fm_assign_work *w, const int *col, int n)
{
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        const double u = w->cost[(size_t)i * n + col[i]] - w->v[col[i]];
        for (int j = 0; j < n; j++) worst = fmin(worst, w->cost[(size_t)i * n + j] - u - w->v[j]);
    }
    return worst;
}

static void check_all(void)
{
    fm_assign_work *w = fm_assign_work_new(400);
    int col[400];
    /* 1. Every size to 8, random real costs and small integer costs (many ties). */
    for (int trial = 0; trial < 400; trial++) {
        const int n = 1 + trial % 8, ties = trial % 2;
        float u[64];
        fm_rng_uniform(u, 11, (uint32_t)trial, 0, FM_STREAM_EVAL, n * n);
        for (int k = 0; k < n * n; k++) w->cost[k] = ties ? floor(4.0 * u[k]) : 10.0 * u[k];
        double c[64];
        memcpy(c, w->cost, sizeof(double) * (size_t)n * n);
        const double got = fm_assign_solve(col, w, n), want = brute_force(c, n);
        CHECK(is_permutation(col, n), "trial %d: not a permutation", trial);
        CHECK(fabs(got - want) < 1e-9, "trial %d (n %d, ties %d): total %g, brute force %g", trial, n, ties, got, want);
        double s = 0.0;
        for (int i = 0; i < n; i++) s += c[i * n + col[i]];
        CHECK(fabs(s - got) < 1e-9, "trial %d: returned total %g, the assignment's %g", trial, got, s);
    }
    /* 2. Large problems, geometric (a shifted cloud: nearly equal rows) and integer: the
     *    certificate holds. */
    for (int trial = 0; trial < 3; trial++) {
        const int n = trial == 0 ? 400 : trial == 1 ? 257 : 100;
        float x0[800], z[800];
        fm_rng_normal(x0, 3, (uint32_t)trial, 0, FM_STREAM_EVAL, 2 * n);
        fm_rng_normal(z, 4, (uint32_t)trial, 0, FM_STREAM_EVAL, 2 * n);
        for (int i = 0; i < n; i++) z[2 * i + 1] += 10.0f;
        if (trial == 2)
            for (int i = 0; i < 2 * n; i++) z[i] = floorf(z[i]), x0[i] = floorf(x0[i]);
        int perm[400];
        const double total = fm_coupling_ot(perm, w, x0, z, n, 2);
        CHECK(is_permutation(perm, n), "n %d: not a permutation", n);
        const double worst = worst_reduced_cost(w, perm, n);
        CHECK(worst > -1e-9 * (1 + total), "n %d: a reduced cost of %g: not optimal", n, worst);
        double s = 0.0; /* the pairing's cost, from the points */
        for (int i = 0; i < n; i++) {
            const double a = z[2 * i] - x0[2 * perm[i]], b = z[2 * i + 1] - x0[2 * perm[i] + 1];
            s += a * a + b * b;
        }
        CHECK(fabs(s - total) < 1e-4 * total, "n %d: total %g, the pairs' %g", n, total, s);
    }
    /* 3. Points that are a permutation of each other pair with their own copies (cost 0). */
    {
        enum { N = 50, D = 3 };
        float x0[N * D], z[N * D];
        fm_rng_normal(x0, 5, 0, 0, FM_STREAM_EVAL, N * D);
        for (int i = 0; i < N; i++) memcpy(z + i * D, x0 + ((i * 7) % N) * D, sizeof(float) * D);
        int perm[N];
        CHECK(fm_coupling_ot(perm, w, x0, z, N, D) == 0.0, "copies cost nothing");
        for (int i = 0; i < N; i++) CHECK(perm[i] == (i * 7) % N, "row %d paired with %d", i, perm[i]);
    }
    fm_assign_work_free(w);
    CHECK(fm_names_find(fm_coupling_name, "ot") == FM_COUPLING_OT && fm_coupling_name(2) == NULL, "names");
}

/* The same assignment from every build, ties included (small integer costs: many optimal
 * assignments, and the relaxation's first least column picks one): the builds differ in their
 * vector width only, and min, compare and one subtraction order round alike. */
enum { SAME_N = 301 };
static int same_col[FM_ISA_COUNT][SAME_N];

static void solve_ties(void)
{
    static double cost[SAME_N * SAME_N];
    float u[SAME_N];
    for (int i = 0; i < SAME_N; i++) {
        fm_rng_uniform(u, 21, 0, (uint32_t)i, FM_STREAM_EVAL, SAME_N);
        for (int j = 0; j < SAME_N; j++) cost[i * SAME_N + j] = floor(6.0 * u[j]);
    }
    fm_assign_work *w = fm_assign_work_new(SAME_N);
    memcpy(w->cost, cost, sizeof cost);
    fm_assign_solve(same_col[fm_isa_active()], w, SAME_N);
    fm_assign_work_free(w);
}

int main(void)
{
    /* Every build of the kernels this machine runs (SSE2, AVX2, AVX-512). */
    check_each_isa(check_all);
    check_each_isa(solve_ties);
    for (int i = 1; i < FM_ISA_COUNT; i++)
        if (fm_isa_supported((fm_isa)i))
            CHECK(memcmp(same_col[i], same_col[0], sizeof same_col[0]) == 0, "%s assigns otherwise than %s",
                  fm_isa_name(i), fm_isa_name(0));
    return check_report("test_coupling");
}
