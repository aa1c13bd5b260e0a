#include "fm/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fm/error.h"

static int g_rank = 0, g_size = 1;

/* FM_FATAL's last step: one rank's error ends every rank, so nobody waits forever in a
 * collective the failed rank will never join. */
static void abort_job(int status)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down && g_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

void fm_comm_init(int *argc, char ***argv)
{
    if (MPI_Init(argc, argv) != MPI_SUCCESS) FM_FATAL("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    /* Errors come back to us as return codes; we end the job with a message of our own. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    fm_error_set_rank(g_rank);
    fm_error_set_hook(abort_job);
}

int fm_comm_rank(void) { return g_rank; }
int fm_comm_size(void) { return g_size; }

#define MPI_OK(call) do { int rc_ = (call); if (rc_ != MPI_SUCCESS) FM_FATAL("%s failed (MPI error %d)", #call, rc_); } while (0)

void fm_comm_bcast(void *buf, size_t bytes)
{
    char *p = buf;
    while (bytes > 0) {
        int n = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        MPI_OK(MPI_Bcast(p, n, MPI_BYTE, 0, MPI_COMM_WORLD));
        p += n;
        bytes -= (size_t)n;
    }
}

/* In-place sum of n elements of `size` bytes, in chunks of at most INT_MAX (MPI counts are int). */
static void allreduce_sum(void *buf, size_t n, MPI_Datatype type, size_t size)
{
    if (g_size == 1) return;
    char *p = buf;
    while (n > 0) {
        int c = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_OK(MPI_Allreduce(MPI_IN_PLACE, p, c, type, MPI_SUM, MPI_COMM_WORLD));
        p += (size_t)c * size;
        n -= (size_t)c;
    }
}

void fm_comm_allreduce_sum(float *buf, size_t n) { allreduce_sum(buf, n, MPI_FLOAT, sizeof *buf); }

void fm_comm_allreduce_max(double *buf, int n)
{
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
}

void fm_comm_allreduce_sum_f64(double *buf, int n)
{
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

double fm_comm_time(void) { return MPI_Wtime(); }

static void exchange(const float *send, size_t ns, float *recv, size_t nr, int partner)
{
    FM_CHECK(ns <= (size_t)INT_MAX && nr <= (size_t)INT_MAX, "tree all-reduce of %zu floats: too long a half", ns);
    MPI_OK(MPI_Sendrecv(send, (int)ns, MPI_FLOAT, partner, 0, recv, (int)nr, MPI_FLOAT, partner, 0, MPI_COMM_WORLD,
                        MPI_STATUS_IGNORE));
}

void fm_comm_allreduce_sum_tree(float *buf, float *scratch, size_t n)
{
    FM_CHECK((g_size & (g_size - 1)) == 0, "tree all-reduce on %d ranks: needs a power of two", g_size);
    size_t lo[32], hi[32]; /* the range each level split */
    size_t a = 0, b = n;   /* the range this rank sums */
    int levels = 0;
    /* Level l pairs ranks differing in bit l: after it, a rank's range holds the sum over its
     * aligned block of 2^(l+1) ranks, lower block + upper block (+ commutes exactly: both
     * partners would compute the same bits; each computes one half). */
    for (int mask = 1; mask < g_size; mask <<= 1, levels++) {
        const int upper = (g_rank & mask) != 0;
        const size_t mid = a + (b - a) / 2;
        lo[levels] = a;
        hi[levels] = b;
        exchange(upper ? buf + a : buf + mid, upper ? mid - a : b - mid, scratch, upper ? b - mid : mid - a,
                 g_rank ^ mask);
        if (upper) a = mid;
        else b = mid;
        for (size_t i = a; i < b; i++) buf[i] += scratch[i - a];
    }
    for (int l = levels - 1; l >= 0; l--) { /* every rank's finished range to every rank */
        const int upper = (g_rank & (1 << l)) != 0;
        const size_t oa = upper ? lo[l] : b, ob = upper ? a : hi[l];
        exchange(buf + a, b - a, buf + oa, ob - oa, g_rank ^ (1 << l));
        a = lo[l];
        b = hi[l];
    }
}

void fm_comm_allreduce_sum_i64(int64_t *buf, size_t n) { allreduce_sum(buf, n, MPI_INT64_T, sizeof *buf); }

static MPI_Request g_pending[FM_COMM_MAX_PENDING];
static int g_npending = 0;

void fm_comm_iallreduce_sum(float *sum, const float *part, size_t n)
{
    if (g_size == 1) {
        memcpy(sum, part, sizeof(float) * n);
        return;
    }
    FM_CHECK(g_npending < FM_COMM_MAX_PENDING && n <= (size_t)INT_MAX, "too many pending all-reduces");
    MPI_OK(MPI_Iallreduce(part, sum, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g_pending[g_npending++]));
}

/* Open MPI moves non-blocking collectives forward only inside MPI calls: poke them. */
void fm_comm_progress(void)
{
    int flag;
    if (g_npending) MPI_OK(MPI_Testall(g_npending, g_pending, &flag, MPI_STATUSES_IGNORE));
}

void fm_comm_wait(void)
{
    if (g_npending) MPI_OK(MPI_Waitall(g_npending, g_pending, MPI_STATUSES_IGNORE));
    g_npending = 0;
}

int fm_comm_all_ok(int ok)
{
    int all = ok ? 1 : 0;
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    return all;
}

void fm_comm_barrier(void) { MPI_OK(MPI_Barrier(MPI_COMM_WORLD)); }

void fm_comm_gather(void *dst, const void *src, size_t bytes)
{
    uint64_t mine = bytes, *sizes = g_rank == 0 ? fm_malloc(sizeof(uint64_t) * (size_t)g_size) : NULL;
    MPI_OK(MPI_Gather(&mine, 1, MPI_UINT64_T, sizes, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
    char *out = dst;
    for (int r = 0; r < g_size; r++) {
        if (g_rank != 0 && r != g_rank) continue;
        const uint64_t total = g_rank == 0 ? sizes[r] : bytes;
        for (uint64_t off = 0; off < total; off += (uint64_t)INT_MAX) {
            const int n = total - off < (uint64_t)INT_MAX ? (int)(total - off) : INT_MAX;
            if (g_rank != 0) MPI_OK(MPI_Send((const char *)src + off, n, MPI_BYTE, 0, 17, MPI_COMM_WORLD));
            else if (r == 0) memcpy(out + off, (const char *)src + off, (size_t)n);
            else MPI_OK(MPI_Recv(out + off, n, MPI_BYTE, r, 17, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        }
        if (g_rank == 0) out += total;
    }
    free(sizes);
}

int fm_comm_node_ranks(void)
{
    MPI_Comm node;
    int n = 0;
    MPI_OK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    MPI_OK(MPI_Comm_size(node, &n));
    MPI_OK(MPI_Comm_free(&node));
    return n;
}

/* ---- one copy per node: an MPI-3 shared-memory window over the ranks of a node ---- */

struct fm_comm_shared {
    MPI_Comm node; /* the ranks that share this node's memory */
    MPI_Win win;
    void *base;
    int leader;    /* node rank 0: holds the memory and fills it */
};

fm_comm_shared *fm_comm_shared_new(size_t bytes)
{
    fm_comm_shared *s = fm_calloc(sizeof *s);
    int node_rank;
    MPI_OK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &s->node));
    MPI_OK(MPI_Comm_rank(s->node, &node_rank));
    s->leader = node_rank == 0;
    /* The leader allocates it all (at least a byte: a window of none has no address); the
     * others allocate nothing and ask for the leader's address in their own address space. */
    const MPI_Aint size = s->leader ? (MPI_Aint)(bytes ? bytes : 1) : 0;
    MPI_OK(MPI_Win_allocate_shared(size, 1, MPI_INFO_NULL, s->node, &s->base, &s->win));
    if (!s->leader) {
        MPI_Aint got;
        int unit;
        MPI_OK(MPI_Win_shared_query(s->win, 0, &got, &unit, &s->base));
    }
    MPI_OK(MPI_Win_fence(0, s->win));
    return s;
}

void *fm_comm_shared_base(const fm_comm_shared *s) { return s->base; }
int fm_comm_shared_leader(const fm_comm_shared *s) { return s->leader; }

void fm_comm_shared_sync(fm_comm_shared *s) { MPI_OK(MPI_Win_fence(0, s->win)); }

double fm_comm_shared_sum(const fm_comm_shared *s, double v)
{
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, s->node));
    return v;
}

void fm_comm_shared_free(fm_comm_shared *s)
{
    if (!s) return;
    MPI_OK(MPI_Win_free(&s->win));
    MPI_OK(MPI_Comm_free(&s->node));
    free(s);
}

_Noreturn void fm_comm_exit(int status)
{
    MPI_Finalize();
    exit(status);
}
