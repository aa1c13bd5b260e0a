#include "fm/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>

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

void fm_comm_allreduce_sum(float *buf, size_t n)
{
    if (g_size == 1) return;
    while (n > 0) {
        int c = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_OK(MPI_Allreduce(MPI_IN_PLACE, buf, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        buf += c;
        n -= (size_t)c;
    }
}

void fm_comm_allreduce_max(double *buf, int n)
{
    MPI_OK(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
}

static MPI_Request g_pending[FM_COMM_MAX_PENDING];
static int g_npending = 0;

void fm_comm_iallreduce_sum(float *buf, size_t n)
{
    if (g_size == 1) return;
    FM_CHECK(g_npending < FM_COMM_MAX_PENDING && n <= (size_t)INT_MAX, "too many pending all-reduces");
    MPI_OK(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g_pending[g_npending++]));
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

_Noreturn void fm_comm_exit(int status)
{
    MPI_Finalize();
    exit(status);
}
