#include "fm/stop.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig)
{
    if (sig == SIGINT && g_signal) _exit(130); /* the second Ctrl-C: no waiting */
    g_signal = sig;
}

void fm_stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* MPI and file calls carry on; the loop checks the flag */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* A file-size limit makes writes fail with EFBIG (reported) rather than kill the process. */
    signal(SIGXFSZ, SIG_IGN);
}

int fm_stop_requested(void) { return (int)g_signal; }

int fm_fault(const char *name, long step)
{
    const char *f = getenv("FM_TEST_FAULT");
    size_t n = strlen(name);
    return f && strncmp(f, name, n) == 0 && f[n] == '=' && atol(f + n + 1) == step;
}
