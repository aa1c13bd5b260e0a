/* The epoch permutations of fm/epoch.h: a bijection of [0, N) for every N (powers of two and
 * not, tiny and large), another one for every epoch and seed, and no visible order. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/epoch.h"

int main(void)
{
    const uint64_t ns[] = {1, 2, 3, 5, 16, 17, 1000, 4096, 60000, 65537};
    unsigned char *seen = malloc(65537);
    uint64_t *first = malloc(sizeof(uint64_t) * 65537);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const uint64_t n = ns[k];
        for (uint64_t e = 0; e < 3; e++) {
            memset(seen, 0, n);
            uint64_t moved = 0, same_as_epoch0 = 0, bad = 0;
            for (uint64_t i = 0; i < n; i++) {
                const uint64_t r = fm_epoch_perm(i, n, 42, e);
                if (r >= n || seen[r]) bad++;
                else seen[r] = 1;
                moved += r != i;
                if (e == 0) first[i] = r;
                else same_as_epoch0 += r == first[i];
                /* fm_epoch_row is the same thing by global index */
                if (fm_epoch_row(e * n + i, n, 42) != r) bad++;
            }
            CHECK(bad == 0, "n %llu, epoch %llu: %llu rows out of range, repeated or misplaced", (unsigned long long)n,
                  (unsigned long long)e, (unsigned long long)bad);
            if (n >= 1000) {
                /* A random permutation has about one fixed point and agrees with another at about one place. */
                CHECK(moved > n - 20, "n %llu: only %llu of the rows move", (unsigned long long)n, (unsigned long long)moved);
                CHECK(e == 0 || same_as_epoch0 < 20, "n %llu: epoch %llu repeats epoch 0 at %llu rows",
                      (unsigned long long)n, (unsigned long long)e, (unsigned long long)same_as_epoch0);
            }
        }
    }
    /* Another seed, another order. */
    uint64_t same = 0;
    for (uint64_t i = 0; i < 1000; i++) same += fm_epoch_perm(i, 1000, 42, 0) == fm_epoch_perm(i, 1000, 43, 0);
    CHECK(same < 20, "seeds 42 and 43 agree at %llu of 1000 rows", (unsigned long long)same);
    /* Consecutive positions land far apart: the mean gap of neighbours is about n/3. */
    double gap = 0;
    for (uint64_t i = 0; i + 1 < 60000; i++) {
        const double a = (double)fm_epoch_perm(i, 60000, 7, 0), b = (double)fm_epoch_perm(i + 1, 60000, 7, 0);
        gap += a > b ? a - b : b - a;
    }
    gap /= 59999.0;
    CHECK(gap > 0.3 * 60000 && gap < 0.37 * 60000, "mean gap between neighbours %g (n/3 = 20000)", gap);
    free(seen);
    free(first);
    return check_report("test_epoch");
}
