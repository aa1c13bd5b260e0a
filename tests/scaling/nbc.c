/* Open MPI's non-blocking all-reduce as its libnbc component runs it, for the simulator: SimGrid's
 * own MPI_Iallreduce is another algorithm (every rank sends its whole vector to every other), so
 * tests/scaling/build.sh links these three functions in place of src/comm.c's.
 * libnbc (Open MPI 4.1, nbc_iallreduce.c) picks, for a sum of 64 KiB or more on 4 ranks or more
 * that is not in place (as fmtrain asks for it), recursive halving then doubling (powers of two
 * only here); otherwise a binomial reduce to rank 0 and a binomial broadcast back: the whole
 * vector in every round, 2 log2(P) rounds on the critical path. FM_SIM_IALLREDUCE=inplace gives
 * what an in-place sum gets (the binomial one always: fmtrain's choice before it sent from a
 * buffer of its own). Like libnbc without a progress thread, a round starts only inside
 * fm_comm_progress or fm_comm_wait, once the previous round completed. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "fm/comm.h"
#include "fm/error.h"

#define MPI_DO(call) FM_CHECK((call) == MPI_SUCCESS, "nbc: %s failed", #call)
#define MAX_ROUNDS 48
#define MAX_XFERS 16

typedef struct {
    int peer, recv, reduce; /* recv: into buf (reduce: into tmp, then added to buf) */
    size_t off, len;
} xfer;

typedef struct {
    xfer x[MAX_XFERS];
    int nx;
} round;

typedef struct {
    float *buf, *tmp; /* [n] */
    round r[MAX_ROUNDS];
    int nr, cur, tag, nreq;
    MPI_Request req[MAX_XFERS];
} coll;

static coll g_coll[FM_COMM_MAX_PENDING];
static int g_n;

static round *add_round(coll *c)
{
    FM_CHECK(c->nr < MAX_ROUNDS, "nbc: too many rounds");
    round *r = &c->r[c->nr++];
    r->nx = 0;
    return r;
}

static void add_xfer(round *r, int peer, int recv, int reduce, size_t off, size_t len)
{
    FM_CHECK(r->nx < MAX_XFERS, "nbc: too many transfers in a round");
    r->x[r->nx++] = (xfer){peer, recv, reduce, off, len};
}

static void binomial(coll *c, int rank, int p, size_t n)
{
    int maxr = 0;
    while ((1 << maxr) < p) maxr++;
    for (int r = 1; r <= maxr; r++) { /* reduce to rank 0 */
        if (rank % (1 << r) == 0) {
            if (rank + (1 << (r - 1)) < p) add_xfer(add_round(c), rank + (1 << (r - 1)), 1, 1, 0, n);
        } else {
            add_xfer(add_round(c), rank - (1 << (r - 1)), 0, 0, 0, n);
            break;
        }
    }
    for (int r = 0; r < maxr && rank; r++) /* broadcast: from the parent, then to the children */
        if (rank >= (1 << r) && rank < (1 << (r + 1))) add_xfer(add_round(c), rank - (1 << r), 1, 0, 0, n);
    round *s = add_round(c);
    for (int r = 0; r < maxr; r++)
        if ((rank + (1 << r) < p && rank < (1 << r)) || rank == 0) add_xfer(s, rank + (1 << r), 0, 0, 0, n);
}

static void redscat(coll *c, int rank, int p, size_t n)
{
    FM_CHECK((p & (p - 1)) == 0, "nbc: redscat on %d ranks: a power of two only", p);
    size_t a = 0, b = n, lo[32], hi[32];
    int l = 0;
    for (int mask = p / 2; mask >= 1; mask /= 2, l++) {
        const int upper = (rank & mask) != 0;
        const size_t mid = a + (b - a) / 2;
        lo[l] = a;
        hi[l] = b;
        round *r = add_round(c);
        add_xfer(r, rank ^ mask, 0, 0, upper ? a : mid, upper ? mid - a : b - mid);
        if (upper) a = mid;
        else b = mid;
        add_xfer(r, rank ^ mask, 1, 1, a, b - a);
    }
    for (int k = l - 1; k >= 0; k--) {
        const int mask = p >> (k + 1), upper = (rank & mask) != 0;
        round *r = add_round(c);
        add_xfer(r, rank ^ mask, 0, 0, a, b - a);
        add_xfer(r, rank ^ mask, 1, 0, upper ? lo[k] : b, upper ? a - lo[k] : hi[k] - b);
        a = lo[k];
        b = hi[k];
    }
}

static void start_round(coll *c)
{
    const round *r = &c->r[c->cur];
    c->nreq = 0;
    for (int i = 0; i < r->nx; i++) {
        const xfer *x = &r->x[i];
        float *p = (x->recv && x->reduce ? c->tmp : c->buf) + x->off;
        if (x->recv) MPI_DO(MPI_Irecv(p, (int)x->len, MPI_FLOAT, x->peer, c->tag, MPI_COMM_WORLD, &c->req[c->nreq++]));
        else MPI_DO(MPI_Isend(p, (int)x->len, MPI_FLOAT, x->peer, c->tag, MPI_COMM_WORLD, &c->req[c->nreq++]));
    }
}

/* The rounds of c that can go: each completed one's sums, then the next one started. */
static void advance(coll *c)
{
    while (c->cur < c->nr) {
        int flag;
        MPI_DO(MPI_Testall(c->nreq, c->req, &flag, MPI_STATUSES_IGNORE));
        if (!flag) return;
        const round *r = &c->r[c->cur];
        for (int i = 0; i < r->nx; i++)
            if (r->x[i].recv && r->x[i].reduce)
                for (size_t j = r->x[i].off; j < r->x[i].off + r->x[i].len; j++) c->buf[j] += c->tmp[j];
        if (++c->cur < c->nr) start_round(c);
    }
}

void fm_comm_iallreduce_sum(float *sum, const float *part, size_t n)
{
    int rank, p;
    MPI_DO(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_DO(MPI_Comm_size(MPI_COMM_WORLD, &p));
    memcpy(sum, part, sizeof(float) * n); /* libnbc's first step out of place; then in sum */
    if (p == 1) return;
    FM_CHECK(g_n < FM_COMM_MAX_PENDING && n <= (size_t)1 << 30, "nbc: too many pending all-reduces");
    coll *c = &g_coll[g_n];
    c->buf = sum;
    c->tmp = fm_malloc(sizeof(float) * n);
    c->nr = c->cur = 0;
    c->tag = 1000 + g_n++;
    const char *alg = getenv("FM_SIM_IALLREDUCE");
    if (!(alg && !strcmp(alg, "inplace")) && p >= 4 && n * sizeof(float) >= 65536) redscat(c, rank, p, n);
    else binomial(c, rank, p, n);
    start_round(c);
}

void fm_comm_progress(void)
{
    for (int i = 0; i < g_n; i++) advance(&g_coll[i]);
}

/* Blocks until every pending one is done, all of them moving on together (libnbc progresses
 * every pending schedule whenever the library is polled). */
void fm_comm_wait(void)
{
    MPI_Request all[FM_COMM_MAX_PENDING * MAX_XFERS];
    for (;;) {
        int m = 0;
        for (int i = 0; i < g_n; i++)
            if (g_coll[i].cur < g_coll[i].nr)
                for (int j = 0; j < g_coll[i].nreq; j++) all[m++] = g_coll[i].req[j];
        if (m == 0) break;
        int done, idx[FM_COMM_MAX_PENDING * MAX_XFERS];
        MPI_DO(MPI_Waitsome(m, all, &done, idx, MPI_STATUSES_IGNORE));
        m = 0; /* the completed requests are MPI_REQUEST_NULL now: back into their rounds */
        for (int i = 0; i < g_n; i++)
            if (g_coll[i].cur < g_coll[i].nr)
                for (int j = 0; j < g_coll[i].nreq; j++) g_coll[i].req[j] = all[m++];
        fm_comm_progress();
    }
    for (int i = 0; i < g_n; i++) free(g_coll[i].tmp);
    g_n = 0;
}
