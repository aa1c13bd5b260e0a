/* The floating-point mode of fm/fpmode.h where the design puts it: in the main thread before main
 * runs, and in the threads OpenBLAS started when it loaded. Seen by results, not by time: with
 * DAZ a subnormal input reads as 0, so 1e-39 * 1e5 is 0, and without it 1e-34. */
#include <cblas.h>
#include <stdlib.h>

#include "check.h"
#include "fm/fpmode.h"

int main(void)
{
    CHECK(fm_fpmode_ok(), "the main thread does not flush subnormals when main starts");
    enum { N = 512 }; /* large enough for OpenBLAS to split the product over its threads */
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N), *c = malloc(sizeof(float) * N * N);
    for (int i = 0; i < N * N; i++) {
        a[i] = 1e-39f; /* subnormal */
        b[i] = 1e5f;
    }
    for (int threads = 1; threads <= 4; threads *= 2) {
        openblas_set_num_threads(threads);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        long nonzero = 0;
        for (int i = 0; i < N * N; i++) nonzero += c[i] != 0.0f;
        CHECK(nonzero == 0, "%d BLAS threads: %ld of %d products of a subnormal were not flushed", threads, nonzero,
              N * N);
    }
    free(a);
    free(b);
    free(c);
    return check_report("test_fpmode");
}
