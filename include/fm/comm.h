/* Everything that talks MPI. The rest of fm calls these, never MPI itself. */
#ifndef FM_COMM_H
#define FM_COMM_H

#include <stddef.h>
#include <stdint.h>

/* MPI_Init; records the rank for error messages; makes FM_FATAL end the whole job. */
void fm_comm_init(int *argc, char ***argv);
int fm_comm_rank(void);
int fm_comm_size(void);

/* Broadcast of bytes from rank 0 (any size: sent in pieces under MPI's int count). */
void fm_comm_bcast(void *buf, size_t bytes);
/* Rank 0's dst receives every rank's `bytes` of src, in rank order (any size: in pieces); dst is
 * unused elsewhere. The writers of samples and log-likelihoods gather their rows with it. */
void fm_comm_gather(void *dst, const void *src, size_t bytes);

/* In-place sum over ranks of n floats (the flat gradient with the loss appended). */
void fm_comm_allreduce_sum(float *buf, size_t n);

/* Non-blocking sums (for overlap with the backward): sum[i] = the sum over ranks of part[i];
 * start one, let pending ones progress, wait for all; part must stay unchanged until then. Not
 * in place on purpose: Open MPI 4.1's libnbc runs an in-place sum as a binomial reduce and
 * broadcast of the whole vector (2 log2 P rounds of n), and one from another buffer of 64 KiB or
 * more on 4 ranks or more as recursive halving and doubling (README: Scaling). At most
 * FM_COMM_MAX_PENDING at once. */
#define FM_COMM_MAX_PENDING 64
void fm_comm_iallreduce_sum(float *sum /* [n] */, const float *part /* [n] */, size_t n);
void fm_comm_progress(void);
void fm_comm_wait(void);

/* In-place maximum over ranks of n doubles (timings, memory). */
void fm_comm_allreduce_max(double *buf, int n);
/* Seconds of MPI's clock (MPI_Wtime): under a simulator (SimGrid's SMPI), the simulated time. */
double fm_comm_time(void);

/* In-place sum over ranks of n floats in a fixed tree: ((r0 + r1) + (r2 + r3)) + ..., so every
 * rank gets the same bits whatever the MPI library's own algorithms (the deterministic mode's
 * float path). Recursive halving, then doubling: a ring's bandwidth in 2 log2(P) messages. The
 * number of ranks must be a power of two. scratch: [(n + 1) / 2]. */
void fm_comm_allreduce_sum_tree(float *buf /* [n] */, float *scratch, size_t n);
/* In-place exact sum over ranks of n 64-bit integers (the deterministic mode's fixed point). */
void fm_comm_allreduce_sum_i64(int64_t *buf, size_t n);
/* In-place sum over ranks of n doubles (counts, sums of per-row figures). */
void fm_comm_allreduce_sum_f64(double *buf, int n);

/* 1 when ok is non-zero on every rank: one rank's failure becomes everyone's decision. */
int fm_comm_all_ok(int ok);

void fm_comm_barrier(void);

/* Collective: how many ranks share this rank's node. */
int fm_comm_node_ranks(void);

/* One copy per node (MPI-3 shared memory): collective over all ranks; the ranks of a node share
 * one allocation of `bytes`, which node rank 0 (the leader) fills, then every rank calls sync
 * before reading it. */
typedef struct fm_comm_shared fm_comm_shared;
fm_comm_shared *fm_comm_shared_new(size_t bytes);
void *fm_comm_shared_base(const fm_comm_shared *s);
int fm_comm_shared_leader(const fm_comm_shared *s);
void fm_comm_shared_sync(fm_comm_shared *s);
/* The sum of v over the ranks of this node. */
double fm_comm_shared_sum(const fm_comm_shared *s, double v);
void fm_comm_shared_free(fm_comm_shared *s); /* collective */

/* A clean end for all ranks together: MPI_Finalize, then exit(status). */
_Noreturn void fm_comm_exit(int status);

#endif
