/* The file target on a dataset in memory: every row exactly once per epoch, the same global
 * batches whatever the split over ranks, labels that follow their rows, value_range mapped to
 * [-1, 1] for each element type. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/target.h"

enum { N = 37, D = 2, B = 10, STEPS = 12 }; /* 120 samples: three epochs and a bit */

/* The rows drawn at every step on P ranks (rank r owns [floor(rB/P), floor((r+1)B/P))). */
static void draw_all(int32_t *rows /* [STEPS * B] */, int32_t *labels, const fm_target *t, int P)
{
    float z[B * D];
    int y[B];
    for (int s = 1; s <= STEPS; s++)
        for (int r = 0; r < P; r++) {
            const int i0 = B * r / P, i1 = B * (r + 1) / P;
            t->ops->draw(z, y, t, 5, (uint32_t)s, (uint32_t)i0, i1 - i0);
            for (int i = i0; i < i1; i++) {
                /* row k holds (k, -k) in [-100, 100]: back from [-1, 1] */
                rows[(s - 1) * B + i] = (int32_t)lroundf(100.0f * z[(i - i0) * D]);
                labels[(s - 1) * B + i] = y[i - i0];
                CHECK_NEAR(z[(i - i0) * D + 1], -z[(i - i0) * D], 1e-6);
            }
        }
}

int main(void)
{
    float x[N * D];
    int32_t y[N];
    for (int k = 0; k < N; k++) {
        x[k * D] = (float)k;
        x[k * D + 1] = (float)-k;
        y[k] = k % 3;
    }
    const fm_dataset data = {x, y, FM_DTYPE_F32, N, D, 1, {D}, -100.0, 100.0, 3, 0x1234};
    fm_config c;
    char err[256];
    fm_config_defaults(&c);
    CHECK(fm_config_set(&c, "data.target", "file", err, sizeof err) == 0 && fm_config_set(&c, "train.batch", "10", err,
          sizeof err) == 0 && fm_config_set(&c, "data.file", "mem.h5", err, sizeof err) == 0, "%s", err);
    fm_target t;
    CHECK(fm_target_build(&t, &c, &data, err, sizeof err) == 0, "%s", err);
    CHECK(t.classes == 3 && t.fingerprint == 0x1234 && strstr(t.about, "37 rows of [2] float32"), "about: %s", t.about);
    int32_t rows1[STEPS * B], lab1[STEPS * B], rows[STEPS * B], lab[STEPS * B];
    draw_all(rows1, lab1, &t, 1);
    /* Each whole epoch is a permutation of the rows, and the next epoch another one. */
    for (int e = 0; e * N + N <= STEPS * B; e++) {
        int seen[N] = {0}, bad = 0;
        for (int g = e * N; g < e * N + N; g++) {
            if (rows1[g] < 0 || rows1[g] >= N || seen[rows1[g]]++) bad++;
            if (lab1[g] != rows1[g] % 3) bad++;
        }
        CHECK(bad == 0, "epoch %d: %d rows missing, repeated or mislabelled", e, bad);
    }
    CHECK(memcmp(rows1, rows1 + N, sizeof(int32_t) * N) != 0, "epoch 1 repeats epoch 0's order");
    /* The same global batches on 2, 3 and 4 ranks. */
    for (int P = 2; P <= 4; P++) {
        draw_all(rows, lab, &t, P);
        CHECK(memcmp(rows, rows1, sizeof rows) == 0 && memcmp(lab, lab1, sizeof lab) == 0, "%d ranks draw other rows", P);
    }
    fm_target_free(&t);

    /* uint8 and float64 rows: value_range lo -> -1, hi -> +1. */
    const uint8_t u8[4] = {0, 51, 204, 255};
    const double f64[4] = {-3.0, 0.0, 1.5, 5.0};
    fm_dataset d8 = {u8, NULL, FM_DTYPE_U8, 2, 2, 1, {2}, 0.0, 255.0, 0, 0};
    fm_dataset d64 = {f64, NULL, FM_DTYPE_F64, 2, 2, 1, {2}, -3.0, 5.0, 0, 0};
    const uint64_t pick[2] = {1, 0};
    float out[4];
    fm_dataset_rows(out, &d8, pick, 2);
    CHECK_NEAR(out[0], 204.0 / 127.5 - 1.0, 1e-6);
    CHECK_NEAR(out[3], 51.0 / 127.5 - 1.0, 1e-6);
    fm_dataset_rows(out, &d64, pick, 2);
    CHECK_NEAR(out[0], 0.125, 1e-7);
    CHECK_NEAR(out[1], 1.0, 1e-7);
    CHECK_NEAR(out[2], -1.0, 1e-7);
    /* Fingerprints tell data apart. */
    CHECK(fm_dataset_hash(u8, 4, 0) != fm_dataset_hash(u8, 3, 0) && fm_dataset_hash(x, sizeof x, 0) ==
          fm_dataset_hash(x, sizeof x, 0), "fingerprints");
    return check_report("test_target_file");
}
