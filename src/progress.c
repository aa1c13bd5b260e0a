#include "fm/progress.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm/clock.h"
#include "fm/config.h"
#include "fm/error.h"

static void duration(char *out, size_t cap, double s)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void write_row(FILE *f, const fm_history *h, size_t i)
{
    fprintf(f, "%lld\t%.9g\t%.6g\t%.6g\t%.6f\t%.9g\n", (long long)h->step[i], h->loss[i], h->lr[i], h->grad_norm[i],
            h->time[i], h->val_loss[i]);
}

int fm_progress_open(fm_progress *p, const char *outdir, const fm_history *hist, long step, long total,
                     long batch, long log_every, const char *style, char *err, int cap)
{
    char path[FM_PATH_MAX + 32], tmp[FM_PATH_MAX + 40];
    memset(p, 0, sizeof *p);
    snprintf(path, sizeof path, "%s/history.tsv", outdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fm_errorf(err, cap, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "# fm history (flushed while training runs; see fm_analyze.py follow)\n");
    fprintf(f, "step\tloss\tlr\tgrad_norm\ttime\tval_loss\n");
    for (size_t i = 0; i < hist->n; i++) write_row(f, hist, i);
    if (fflush(f) || ferror(f) || rename(tmp, path)) {
        fm_errorf(err, cap, "cannot write %s: %s", path, strerror(errno));
        fclose(f);
        unlink(tmp);
        return -1;
    }
    p->tsv = f; /* the renamed file, still open: appends go to history.tsv */
    p->written = hist->n;
    p->good = ftell(f);
    /* mpirun hands every rank a pseudo-terminal whatever its own output is (a log, a pipe), so
     * under mpirun "auto" cannot tell a terminal and prints plain lines. */
    if (strcmp(style, "auto") == 0) p->tty = isatty(fileno(stdout)) && !getenv("OMPI_COMM_WORLD_SIZE");
    else p->tty = strcmp(style, "line") == 0;
    p->total = total;
    p->batch = batch;
    p->log_every = log_every;
    p->step_log = step;
    p->t_log = p->t_draw = p->t_flush = fm_now();
    return 0;
}

/* The rows not yet in the file, appended and flushed; on failure the file is cut back to its last
 * whole row and they stay pending. */
static void flush_rows(fm_progress *p, const fm_history *hist)
{
    for (size_t i = p->written; i < hist->n; i++) write_row(p->tsv, hist, i);
    if (fflush(p->tsv) == 0 && !ferror(p->tsv)) {
        p->written = hist->n;
        p->good = ftell(p->tsv);
        return;
    }
    const int e = errno;
    clearerr(p->tsv);
    if (ftruncate(fileno(p->tsv), p->good) || fseek(p->tsv, p->good, SEEK_SET)) p->written = hist->n; /* cannot undo */
    if (!p->warned)
        fprintf(stderr, "fmtrain: warning: writing history.tsv failed (%s); its rows are kept in memory (and in the "
                "checkpoint) and written when the disk allows\n", strerror(e));
    p->warned = 1;
}

void fm_progress_step(fm_progress *p, const fm_history *hist, long step, float loss, double lr,
                      double grad_norm, double elapsed)
{
    const double t = fm_now();
    if (p->tsv && t - p->t_flush > 1.0) { /* readable within a second, one write a second */
        flush_rows(p, hist);
        p->t_flush = t;
    }
    const int logged = step % p->log_every == 0 || step == p->total;
    /* On a terminal the line is redrawn up to 5 times a second; in a log, every log_every steps. */
    if (!(p->tty ? (t - p->t_draw > 0.2 || step == p->total) : logged)) return;
    if (t > p->t_log) {
        p->rate = (double)(step - p->step_log) / (t - p->t_log);
        p->t_log = t;
        p->step_log = step;
    }
    char el[32], left[32];
    duration(el, sizeof el, elapsed);
    duration(left, sizeof left, p->rate > 0 ? (double)(p->total - step) / p->rate : 0);
    const int w = (int)snprintf(NULL, 0, "%ld", p->total);
    if (p->tty) {
        printf("\rstep %*ld/%ld  loss %10.4f  %8.1f steps/s  %9.0f samples/s  elapsed %s  left %s ", w, step, p->total,
               loss, p->rate, p->rate * (double)p->batch, el, left);
        if (step == p->total) printf("\n");
        p->t_draw = t;
    } else {
        char val[48] = "";
        if (hist->n && isfinite(hist->val_loss[hist->n - 1]))
            snprintf(val, sizeof val, "  val %.4f (step %lld)", hist->val_loss[hist->n - 1], (long long)hist->step[hist->n - 1]);
        printf("step %*ld/%ld  loss %10.4f%s  lr %.2e  |g| %9.3g  %9.0f samples/s  %.2f ms/step  elapsed %s  left %s\n", w,
               step, p->total, loss, val, lr, grad_norm, p->rate * (double)p->batch, p->rate > 0 ? 1e3 / p->rate : 0.0, el,
               left);
    }
    fflush(stdout);
}

void fm_progress_close(fm_progress *p, const fm_history *hist, const char *why, long step)
{
    if (p->tty && strcmp(why, "done") != 0) printf("\n");
    if (!p->tsv) return;
    flush_rows(p, hist);
    fprintf(p->tsv, "# end: %s step %ld\n", why, step);
    if (fclose(p->tsv))
        fprintf(stderr, "fmtrain: warning: history.tsv lacks its end line (%s); the checkpoint has the whole history\n",
                strerror(errno));
    p->tsv = NULL;
}

int fm_progress_info(const char *path, char *err, int cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fm_errorf(err, cap, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char line[512], last[512] = "", end[512] = "running (no end line yet)";
    long rows = 0;
    int header = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "# end: ", 7) == 0) snprintf(end, sizeof end, "%s", line + 7);
        else if (line[0] == '#') continue;
        else if (!header) header = strncmp(line, "step\t", 5) == 0 ? 1 : -1;
        else { rows++; snprintf(last, sizeof last, "%s", line); }
    }
    fclose(f);
    if (header != 1) {
        fm_errorf(err, cap, "%s is not an fm history file (no 'step<TAB>loss...' header)", path);
        return -1;
    }
    end[strcspn(end, "\n")] = '\0';
    last[strcspn(last, "\n")] = '\0';
    printf("%s: fm history (text), %ld rows; columns step loss lr grad_norm time val_loss\nlast row: %s\nend: %s\n", path, rows,
           *last ? last : "(none)", end);
    return 0;
}
