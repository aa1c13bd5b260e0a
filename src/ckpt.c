#include "fm/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm/error.h"
#include "fm/file.h"
#include "fm/h5io.h"
#include "fm/stop.h"
#include "fm/version.h"

/* Each tensor of buf under prefix ("/model", "/optim/m", ...); what names the dataset written last. */
static int write_tensors(fm_h5 f, const char *prefix, const fm_tensor *t, int n, const float *buf, char *what,
                         size_t wcap)
{
    for (int i = 0; i < n; i++) {
        snprintf(what, wcap, "%s/%s", prefix, t[i].name);
        if (fm_h5_write_f32(f, what, buf + t[i].offset, t[i].rank, t[i].shape)) return -1;
    }
    return 0;
}

static void shape_text(char *out, size_t cap, const fm_tensor *t)
{
    size_t len = (size_t)snprintf(out, cap, "[");
    for (int k = 0; k < t->rank && len < cap; k++)
        len += (size_t)snprintf(out + len, cap - len, "%s%llu", k ? ", " : "", (unsigned long long)t->shape[k]);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

static int read_tensors(fm_h5 f, const char *prefix, const fm_model *m, float *buf, char *err, int cap,
                        const char *path)
{
    char name[FM_TENSOR_NAME + 32];
    for (int i = 0; i < m->ntensors; i++) {
        const fm_tensor *t = &m->tensors[i];
        snprintf(name, sizeof name, "%s/%s", prefix, t->name);
        int rank, ok;
        uint64_t d[8];
        ok = fm_h5_shape(f, name, &rank, d) == 0 && rank == t->rank;
        for (int k = 0; ok && k < rank; k++) ok = d[k] == t->shape[k];
        if (!ok || fm_h5_read_f32(f, name, buf + t->offset, t->count)) {
            char shape[96];
            shape_text(shape, sizeof shape, t);
            if (ok && fm_h5_checksum_failed())
                fm_errorf(err, cap, "%s: dataset %s fails its checksum: the file is corrupt (not what fmtrain wrote)",
                          path, name);
            else
                fm_errorf(err, cap, "%s: dataset %s is missing or not float %s as its config says: the file is "
                          "corrupt", path, name, shape);
            return -1;
        }
    }
    return 0;
}

int fm_ckpt_write(const char *path, const fm_ckpt_state *s, char *err, int cap)
{
    char tmp[FM_PATH_MAX + 8], what[FM_TENSOR_NAME + 32] = "the in-memory HDF5 image";
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* Built in memory, then written with plain POSIX calls: a full disk or a dead NFS server is
     * an ordinary write error, and no HDF5 state is left half-closed. */
    const fm_model *m = s->model;
    const fm_history *h = s->hist;
    const uint64_t n[1] = {h->n};
    const int64_t step64 = s->step;
    fm_h5 f = fm_h5_create_memory();
    int rc = f < 0 ? -1 : 0;
#define WRITE(name, call) if (rc == 0) { snprintf(what, sizeof what, "%s", name); rc = (call) ? -1 : 0; }
    char fingerprint[24];
    snprintf(fingerprint, sizeof fingerprint, "%016" PRIx64, s->target->fingerprint);
    WRITE("the root attributes", fm_h5_stamp(f, "checkpoint") || fm_h5_attr_i64(f, "/", "step", s->step) ||
                                 fm_h5_attr_str(f, "/", "config", s->config_text) ||
                                 fm_h5_attr_str(f, "/", "data", s->target->about) ||
                                 (s->target->fingerprint && fm_h5_attr_str(f, "/", "data_fingerprint", fingerprint)) ||
                                 fm_h5_write_row_shape(f, &s->target->rows));
    if (rc == 0) rc = write_tensors(f, "/model", m->tensors, m->ntensors, s->params, what, sizeof what);
    if (rc == 0) rc = write_tensors(f, "/optim/m", m->tensors, m->ntensors, s->m, what, sizeof what);
    if (rc == 0) rc = write_tensors(f, "/optim/v", m->tensors, m->ntensors, s->v, what, sizeof what);
    if (rc == 0 && s->ema) rc = write_tensors(f, "/ema", m->tensors, m->ntensors, s->ema, what, sizeof what);
    WRITE("/optim/step", fm_h5_write_i64(f, "/optim/step", &step64, 0, NULL));
    WRITE("/history/step", fm_h5_write_i64(f, "/history/step", h->step, 1, n));
    WRITE("/history/loss", fm_h5_write_f32(f, "/history/loss", h->loss, 1, n));
    WRITE("/history/lr", fm_h5_write_f32(f, "/history/lr", h->lr, 1, n));
    WRITE("/history/grad_norm", fm_h5_write_f32(f, "/history/grad_norm", h->grad_norm, 1, n));
    WRITE("/history/time", fm_h5_write_f64(f, "/history/time", h->time, 1, n));
    WRITE("/history/val_loss", fm_h5_write_f32(f, "/history/val_loss", h->val_loss, 1, n));
    static const char *const along_step[] = {"/history/step"};
    WRITE("/history's dimension step", fm_h5_scale(f, "/history/step") ||
          fm_h5_attach(f, "/history/loss", along_step, 1) || fm_h5_attach(f, "/history/lr", along_step, 1) ||
          fm_h5_attach(f, "/history/grad_norm", along_step, 1) || fm_h5_attach(f, "/history/time", along_step, 1) ||
          fm_h5_attach(f, "/history/val_loss", along_step, 1));
#undef WRITE
    if (rc == 0)
        rc = write_tensors(f, "/data", s->target->arrays, s->target->narrays, s->target->values, what, sizeof what);
    errno = 0;
    if (rc) {
        fm_h5_discard(f);
        fm_errorf(err, cap, "writing checkpoint %s failed at %s (HDF5 error); the previous checkpoint is untouched",
                  path, what);
        return -1;
    }
    /* Durable before visible: the image is fsync'ed by fm_h5_save, then renamed, then the
     * directory is fsync'ed (a rename that is not durable is a failed save, as in Redis). */
    const char *stage = "writing";
    rc = fm_h5_save(f, tmp);
    if (rc == 0 && fm_fault("crash_in_checkpoint", s->step)) kill(getpid(), SIGKILL); /* test-only */
    if (rc == 0 && (stage = "renaming", rename(tmp, path))) rc = -1;
    if (rc == 0 && (stage = "syncing the directory of", fm_file_fsync_dir_of(path))) {
        fm_errorf(err, cap, "syncing the directory of checkpoint %s failed (%s): the new checkpoint may not survive "
                  "a crash", path, strerror(errno));
        return -1;
    }
    if (rc) {
        const int e = errno;
        unlink(tmp);
        fm_errorf(err, cap, "%s checkpoint %s failed (%s); the previous checkpoint is untouched", stage, path,
                  e ? strerror(e) : "HDF5 write error");
        return -1;
    }
    return 0;
}

static int numbered_step(const char *name, long *step)
{
    char tail[8];
    return sscanf(name, "checkpoint_%ld%7s", step, tail) == 2 && strcmp(tail, ".h5") == 0;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

/* The steps of dir's numbered checkpoints, ascending: how many (at most cap), or -1. */
static int list_numbered(long *steps, int cap, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < cap;)
        if (numbered_step(e->d_name, &steps[n])) n++;
    closedir(d);
    qsort(steps, (size_t)n, sizeof steps[0], cmp_long);
    return n;
}

int fm_ckpt_newest_good(char *path, size_t cap, long *step, const char *dir)
{
    long steps[4096];
    for (int i = list_numbered(steps, 4096, dir) - 1; i >= 0; i--) {
        fm_ckpt c;
        char err[64];
        snprintf(path, cap, "%s/checkpoint_%09ld.h5", dir, steps[i]);
        if (fm_ckpt_read(&c, path, err, sizeof err) == 0) {
            *step = c.step;
            fm_ckpt_free(&c);
            return 0;
        }
    }
    return -1;
}

int fm_ckpt_keep(const char *dir, long step, int keep, char *err, int cap)
{
    char src[FM_PATH_MAX + 32], dst[FM_PATH_MAX + 32];
    snprintf(src, sizeof src, "%s/checkpoint.h5", dir);
    snprintf(dst, sizeof dst, "%s/checkpoint_%09ld.h5", dir, step);
    unlink(dst);
    if (link(src, dst)) {
        fm_errorf(err, cap, "cannot keep %s: %s", dst, strerror(errno));
        return -1;
    }
    /* Delete the oldest numbered checkpoints beyond the newest `keep`. */
    long steps[4096];
    const int n = list_numbered(steps, 4096, dir);
    if (n < 0) {
        fm_errorf(err, cap, "cannot list %s to delete old numbered checkpoints: %s", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n - keep; i++) {
        snprintf(dst, sizeof dst, "%s/checkpoint_%09ld.h5", dir, steps[i]);
        unlink(dst);
    }
    return 0;
}

void fm_ckpt_free(fm_ckpt *c)
{
    free(c->config_text);
    free(c->data_about);
    free(c->params);
    free(c->m);
    free(c->v);
    free(c->ema);
    fm_history_free(&c->hist);
    fm_model_free(&c->model);
    memset(c, 0, sizeof *c);
}

/* /history/val_loss, which files before it lack: NaN there (never evaluated). */
static int read_val_loss(fm_history *h, fm_h5 f, uint64_t n)
{
    int rank;
    uint64_t d[8];
    if (fm_h5_shape(f, "/history/val_loss", &rank, d)) {
        for (uint64_t i = 0; i < n; i++) h->val_loss[i] = NAN;
        return 0;
    }
    return fm_h5_read_f32(f, "/history/val_loss", h->val_loss, n);
}

/* /ema when the file has it (the first tensor tells): read whole, with the same checks. */
static int read_ema(fm_ckpt *c, fm_h5 f, char *err, int cap, const char *path)
{
    char name[FM_TENSOR_NAME + 8];
    int rank;
    uint64_t d[8];
    snprintf(name, sizeof name, "/ema/%s", c->model.tensors[0].name);
    if (fm_h5_shape(f, name, &rank, d)) return 0;
    c->ema = fm_malloc(sizeof(float) * c->model.nparams);
    return read_tensors(f, "/ema", &c->model, c->ema, err, cap, path);
}

/* The dataset a checkpoint was trained on, when it says (format 1 files and mixtures do not). */
static int read_fingerprint(fm_ckpt *c, fm_h5 f)
{
    char *hex = NULL;
    fm_h5_attr_read_str(f, "/", "data", &c->data_about);
    fm_h5_read_row_shape(f, &c->rows);
    if (fm_h5_attr_read_str(f, "/", "data_fingerprint", &hex)) return 0;
    char *end = NULL;
    c->data_fingerprint = strtoull(hex, &end, 16);
    const int bad = strlen(hex) != 16 || *end != '\0';
    free(hex);
    return bad ? -1 : 0;
}

int fm_ckpt_read(fm_ckpt *c, const char *path, char *err, int cap)
{
    memset(c, 0, sizeof *c);
    fm_h5 f = fm_h5_open_fm(path, "checkpoint", err, cap);
    if (f < 0) return -1;
    char msg[512];
    int64_t step = -1, ostep = -1;
    int rank;
    uint64_t d[8];
    int rc = -1;
    fm_config_defaults(&c->cfg);
    if (fm_h5_attr_read_str(f, "/", "config", &c->config_text) ||
        fm_config_load_string(&c->cfg, c->config_text, "stored config", msg, sizeof msg)) {
        fm_errorf(err, cap, "%s: its config attribute is missing or invalid: the file is corrupt", path);
    } else if (fm_model_build(&c->model, &c->cfg, msg, sizeof msg)) {
        fm_errorf(err, cap, "%s: %s", path, msg);
    } else if (read_fingerprint(c, f)) {
        fm_errorf(err, cap, "%s: its data_fingerprint attribute is not 16 hexadecimal digits: the file is corrupt", path);
    } else if (fm_h5_attr_read_i64(f, "/", "step", &step) || step < 0 ||
               fm_h5_read_i64(f, "/optim/step", &ostep, 1) || ostep != step) {
        fm_errorf(err, cap, "%s: step attribute and /optim/step are missing or disagree: the file is corrupt", path);
    } else {
        const size_t n = c->model.nparams;
        c->step = step;
        c->params = fm_malloc(sizeof(float) * n);
        c->m = fm_malloc(sizeof(float) * n);
        c->v = fm_malloc(sizeof(float) * n);
        if (read_tensors(f, "/model", &c->model, c->params, err, cap, path) == 0 &&
            read_tensors(f, "/optim/m", &c->model, c->m, err, cap, path) == 0 &&
            read_tensors(f, "/optim/v", &c->model, c->v, err, cap, path) == 0 && read_ema(c, f, err, cap, path) == 0) {
            /* A row is at least 28 bytes of the file (step, time; loss, lr, grad_norm): a count the
             * file cannot hold is corrupt, and is not allocated. */
            if (fm_h5_shape(f, "/history/step", &rank, d) || rank != 1) {
                fm_errorf(err, cap, "%s: /history/step is missing: the file is corrupt", path);
            } else if (d[0] > fm_h5_file_size(f) / 28) {
                fm_errorf(err, cap, "%s: /history declares %llu rows, more than its %llu bytes can hold: the file is "
                          "corrupt", path, (unsigned long long)d[0], (unsigned long long)fm_h5_file_size(f));
            } else {
                fm_history_reserve(&c->hist, d[0] + 1);
                c->hist.n = d[0];
                if (fm_h5_read_i64(f, "/history/step", c->hist.step, d[0]) ||
                    fm_h5_read_f32(f, "/history/loss", c->hist.loss, d[0]) ||
                    fm_h5_read_f32(f, "/history/lr", c->hist.lr, d[0]) ||
                    fm_h5_read_f32(f, "/history/grad_norm", c->hist.grad_norm, d[0]) ||
                    fm_h5_read_f64(f, "/history/time", c->hist.time, d[0]) || read_val_loss(&c->hist, f, d[0]))
                    fm_errorf(err, cap, "%s: the /history datasets %s: the file is corrupt", path,
                              fm_h5_checksum_failed() ? "fail their checksum" : "are missing or of unequal length");
                else
                    rc = 0;
            }
        }
    }
    /* The one group read above leaves (the target's /data) verified too: a flipped bit anywhere
     * in the data is refused. (/optim/step is a scalar, checked against the step attribute.) */
    int datasets, checked, failed;
    char bad[256];
    if (rc == 0 && (failed = fm_h5_verify(f, "/data", &datasets, &checked, bad, sizeof bad)) != 0) {
        fm_errorf(err, cap, "%s: dataset %s fails its checksum: the file is corrupt (not what fmtrain wrote)", path,
                  failed > 0 ? bad : "(the list)");
        rc = -1;
    }
    if (fm_h5_close(f) && rc == 0) {
        fm_errorf(err, cap, "%s: closing it failed (HDF5 error)", path);
        rc = -1;
    }
    if (rc) fm_ckpt_free(c);
    return rc;
}

int fm_ckpt_info(const char *path, char *err, int cap)
{
    fm_h5 f = fm_h5_open_fm(path, NULL, err, cap);
    if (f < 0) return -1;
    char *format = NULL, *config = NULL, *solver = NULL, *git = NULL;
    int64_t version = 0, step = -1, v;
    fm_h5_attr_read_str(f, "/", "fm_format", &format);
    fm_h5_attr_read_i64(f, "/", "fm_version", &version);
    printf("%s: fm %s, format version %lld\n", path, format, (long long)version);
    if (fm_h5_attr_read_str(f, "/", "fm_git", &git) == 0) printf("written by: fmtrain %s\n", git);
    if (fm_h5_attr_read_str(f, "/", "config", &config) == 0) {
        fm_config cfg;
        fm_model m;
        char msg[512], shape[256];
        fm_config_defaults(&cfg);
        if (fm_config_load_string(&cfg, config, "stored config", msg, sizeof msg) == 0 &&
            fm_model_build(&m, &cfg, msg, sizeof msg) == 0) {
            m.ops->describe(shape, sizeof shape, &m);
            printf("model: %s %s, %zu parameters in %d tensors\n", m.ops->name, shape, m.nparams, m.ntensors);
            fm_model_free(&m);
        }
    }
    if (fm_h5_attr_read_i64(f, "/", "step", &step) == 0) printf("step: %lld\n", (long long)step);
    if (fm_h5_attr_read_i64(f, "/", "checkpoint_step", &v) == 0) printf("checkpoint_step: %lld\n", (long long)v);
    if (fm_h5_attr_read_str(f, "/", "solver", &solver) == 0) printf("solver: %s\n", solver);
    if (fm_h5_attr_read_i64(f, "/", "steps", &v) == 0) printf("steps: %lld\n", (long long)v);
    if (fm_h5_attr_read_i64(f, "/", "seed", &v) == 0) printf("seed: %lld\n", (long long)v);
    printf("datasets:\n");
    int rc = fm_h5_list(f, stdout);
    int datasets = 0, checked = 0;
    char bad[256];
    const int failed = fm_h5_verify(f, "/", &datasets, &checked, bad, sizeof bad);
    if (failed == 0)
        printf("checksums: %d of %d datasets carry a Fletcher32 checksum; every dataset reads back%s\n", checked,
               datasets, checked < datasets ? " (scalars, and files before checksums, have none)" : " and verifies");
    if (config) printf("config:\n%s", config);
    if (failed != 0 || rc) {
        if (failed > 0)
            fm_errorf(err, cap, "%s: %d dataset%s fail%s its checksum or cannot be read, the first %s: the file is "
                      "corrupt", path, failed, failed > 1 ? "s" : "", failed > 1 ? "" : "s", bad);
        else
            fm_errorf(err, cap, "%s: cannot read its list of datasets: the file is corrupt", path);
        rc = -1;
    }
    free(git);
    free(format);
    free(config);
    free(solver);
    if (fm_h5_close(f)) rc = -1;
    return rc;
}
