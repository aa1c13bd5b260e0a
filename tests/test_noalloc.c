/* No allocation inside the step loop: malloc, calloc, realloc and the aligned ones are interposed and counted
 * while the trainer takes steps (after the first few, which warm libraries up), apart by caller:
 * fm's own code (linked into this executable) and the shared libraries. fm's own: none, on any
 * number of ranks. All together on one rank: none. (On more ranks Open MPI's ring all-reduce
 * allocates a temporary inside every MPI_Allreduce: that is counted, reported, not ours.)
 * Not built under AddressSanitizer, which owns malloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/comm.h"
#include "fm/config.h"
#include "fm/conv.h"
#include "fm/error.h"
#include "fm/train.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern char __executable_start[], etext[]; /* this executable's code: fm's, statically linked */
static volatile int counting = 0;
static volatile long allocations = 0, own = 0;

static void count(const void *caller)
{
    if (!counting) return;
    allocations++;
    if ((const char *)caller >= __executable_start && (const char *)caller < etext) own++;
}

void *malloc(size_t n)
{
    count(__builtin_return_address(0));
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count(__builtin_return_address(0));
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count(__builtin_return_address(0));
    return __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count(__builtin_return_address(0));
    return __libc_memalign(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
    count(__builtin_return_address(0));
    *p = __libc_memalign(align, n);
    return *p ? 0 : 12; /* ENOMEM */
}

int main(int argc, char **argv)
{
    fm_comm_init(&argc, &argv);
    char err[256];
    fm_config cfg;
    fm_config_defaults(&cfg);
    fm_config_set(&cfg, "train.steps", "50", err, sizeof err);
    fm_trainer *tr = fm_trainer_new(&cfg, NULL);
    for (int s = 0; s < 3; s++) fm_trainer_step(tr, NULL);
    counting = 1;
    for (int s = 0; s < 20; s++) fm_trainer_step(tr, NULL);
    counting = 0;
    CHECK(own == 0, "fm's code allocated %ld times in 20 steps", own);
    if (fm_comm_size() == 1) CHECK(allocations == 0, "%ld allocations in 20 steps on one rank", allocations);
    else printf("rank %d: %ld allocations inside MPI in 20 steps\n", fm_comm_rank(), allocations);
    fm_trainer_free(tr);
    /* The U-Net (on 8 x 8 images of a Gaussian target), with its direct convolutions and with
     * im2col and sgemm. */
    const char *unet[][2] = {{"model.type", "unet"}, {"data.target", "gaussian"}, {"data.dim", "64"},
                             {"data.shape", "1,8,8"}, {"model.channels", "16,32"}, {"model.time_embed", "fourier"},
                             {"train.batch", "12"}, {"train.microbatch", "4"}};
    for (int k = 0; k < 8; k++) CHECK(fm_config_set(&cfg, unet[k][0], unet[k][1], err, sizeof err) == 0, "%s", err);
    for (int direct = 0; direct < 2; direct++) {
        fm_conv_set_direct(direct);
        tr = fm_trainer_new(&cfg, NULL);
        for (int s = 0; s < 2; s++) fm_trainer_step(tr, NULL);
        allocations = own = 0;
        counting = 1;
        for (int s = 0; s < 5; s++) fm_trainer_step(tr, NULL);
        counting = 0;
        CHECK(own == 0, "fm's code allocated %ld times in 5 U-Net steps (direct %d)", own, direct);
        if (fm_comm_size() == 1) CHECK(allocations == 0, "%ld allocations in 5 U-Net steps", allocations);
        fm_trainer_free(tr);
    }
    fm_conv_set_direct(-1);
    /* The check can fail: an allocation by fm's code while counting is seen as its own. */
    allocations = own = 0;
    counting = 1;
    void *p = fm_malloc(8);
    counting = 0;
    CHECK(own == 1 && allocations == 1, "the counter missed fm's malloc");
    free(p);
    int failed = check_report(fm_comm_rank() == 0 ? "test_noalloc" : "test_noalloc (other rank)");
    fm_comm_exit(failed);
}
