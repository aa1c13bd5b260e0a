#include "fm/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm/error.h"
#include "fm/h5io.h"
#include "fm/stop.h"

void fm_history_reserve(fm_history *h, size_t cap)
{
    if (cap <= h->cap) return;
    h->step = realloc(h->step, sizeof(int64_t) * cap);
    h->loss = realloc(h->loss, sizeof(float) * cap);
    h->lr = realloc(h->lr, sizeof(float) * cap);
    h->grad_norm = realloc(h->grad_norm, sizeof(float) * cap);
    h->time = realloc(h->time, sizeof(double) * cap);
    FM_CHECK(h->step && h->loss && h->lr && h->grad_norm && h->time, "out of memory for the history");
    h->cap = cap;
}

void fm_history_push(fm_history *h, int64_t step, float loss, float lr, float grad_norm, double time)
{
    if (h->n == h->cap) fm_history_reserve(h, h->cap ? 2 * h->cap : 1024);
    h->step[h->n] = step;
    h->loss[h->n] = loss;
    h->lr[h->n] = lr;
    h->grad_norm[h->n] = grad_norm;
    h->time[h->n] = time;
    h->n++;
}

void fm_history_free(fm_history *h)
{
    free(h->step); free(h->loss); free(h->lr); free(h->grad_norm); free(h->time);
    memset(h, 0, sizeof *h);
}

int fm_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int fm_fsync_dir_of(const char *path)
{
    char buf[FM_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    return fm_fsync_path(dirname(buf));
}

/* The datasets of one copy of the parameters under prefix ("/model", "/optim/m", ...). */
static int write_layers(fm_h5 f, const char *prefix, const fm_mlp *m, const float *buf)
{
    char name[128];
    for (int l = 0; l < m->nlayers; l++) {
        uint64_t wd[2] = {(uint64_t)m->dims[l + 1], (uint64_t)m->dims[l]}, bd[1] = {(uint64_t)m->dims[l + 1]};
        snprintf(name, sizeof name, "%s/layer_%d/weight", prefix, l);
        if (fm_h5_write_f32(f, name, buf + m->w_off[l], 2, wd)) return -1;
        snprintf(name, sizeof name, "%s/layer_%d/bias", prefix, l);
        if (fm_h5_write_f32(f, name, buf + m->b_off[l], 1, bd)) return -1;
    }
    return 0;
}

static int read_layers(fm_h5 f, const char *prefix, const fm_mlp *m, float *buf, char *err, int cap,
                       const char *path)
{
    char name[128];
    for (int l = 0; l < m->nlayers; l++) {
        for (int b = 0; b < 2; b++) {
            snprintf(name, sizeof name, "%s/layer_%d/%s", prefix, l, b ? "bias" : "weight");
            int rank;
            uint64_t d[8];
            int ok = fm_h5_shape(f, name, &rank, d) == 0 &&
                     (b ? rank == 1 && d[0] == (uint64_t)m->dims[l + 1]
                        : rank == 2 && d[0] == (uint64_t)m->dims[l + 1] && d[1] == (uint64_t)m->dims[l]);
            if (!ok || fm_h5_read_f32(f, name, buf + (b ? m->b_off[l] : m->w_off[l]),
                                      b ? (uint64_t)m->dims[l + 1] : (uint64_t)m->dims[l + 1] * m->dims[l])) {
                char shape[48];
                if (b) snprintf(shape, sizeof shape, "[%d]", m->dims[l + 1]);
                else snprintf(shape, sizeof shape, "[%d, %d]", m->dims[l + 1], m->dims[l]);
                fm_errorf(err, cap, "%s: dataset %s is missing or not float %s as its config says: the file is "
                          "corrupt", path, name, shape);
                return -1;
            }
        }
    }
    return 0;
}

int fm_ckpt_write(const char *path, const char *config_text, const fm_dist *target, const fm_mlp *m,
                  const float *params, const float *adam_m, const float *adam_v, long step, const fm_history *h, char *err, int cap)
{
    char tmp[FM_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* Built in memory, then written with plain POSIX calls: a full disk or a dead NFS server is
     * an ordinary write error, and no HDF5 state is left half-closed. */
    fm_h5 f = fm_h5_create_memory();
    if (f < 0) {
        fm_errorf(err, cap, "cannot create an HDF5 image for %s", path);
        return -1;
    }
    uint64_t n[1] = {h->n}, md[2] = {(uint64_t)target->nmodes, (uint64_t)target->dim};
    int64_t step64 = step;
    int rc = fm_h5_attr_str(f, "/", "fm_format", "checkpoint") || fm_h5_attr_i64(f, "/", "fm_version", FM_FORMAT_VERSION) ||
             fm_h5_attr_i64(f, "/", "step", step) || fm_h5_attr_str(f, "/", "config", config_text) ||
             write_layers(f, "/model", m, params) || write_layers(f, "/optim/m", m, adam_m) ||
             write_layers(f, "/optim/v", m, adam_v) || fm_h5_write_i64(f, "/optim/step", &step64, 0, NULL) ||
             fm_h5_write_i64(f, "/history/step", h->step, 1, n) || fm_h5_write_f32(f, "/history/loss", h->loss, 1, n) ||
             fm_h5_write_f32(f, "/history/lr", h->lr, 1, n) ||
             fm_h5_write_f32(f, "/history/grad_norm", h->grad_norm, 1, n) ||
             fm_h5_write_f64(f, "/history/time", h->time, 1, n) ||
             fm_h5_write_f32(f, "/data/target_means", target->means, 2, md) ||
             fm_h5_write_f32(f, "/data/target_std", &target->std, 0, NULL);
    errno = 0;
    if (rc) fm_h5_close(f);
    /* Durable before visible: the image is fsync'ed by fm_h5_save, then renamed, then the
     * directory is fsync'ed. */
    else if (fm_h5_save(f, tmp)) rc = -1;
    if (rc == 0 && fm_fault("crash_in_checkpoint", step)) kill(getpid(), SIGKILL); /* test-only */
    if (rc == 0 && rename(tmp, path)) rc = -1;
    if (rc) {
        int e = errno;
        unlink(tmp);
        fm_errorf(err, cap, "writing checkpoint %s failed (%s); the previous checkpoint is untouched", path,
                  e ? strerror(e) : "HDF5 write error");
        return -1;
    }
    fm_fsync_dir_of(path);
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
    DIR *d = opendir(dir);
    if (!d) return 0;
    long steps[4096];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 4096;)
        if (numbered_step(e->d_name, &steps[n])) n++;
    closedir(d);
    qsort(steps, (size_t)n, sizeof steps[0], cmp_long);
    for (int i = 0; i < n - keep; i++) {
        snprintf(dst, sizeof dst, "%s/checkpoint_%09ld.h5", dir, steps[i]);
        unlink(dst);
    }
    return 0;
}

void fm_ckpt_free(fm_ckpt *c)
{
    free(c->config_text);
    free(c->params);
    free(c->m);
    free(c->v);
    fm_history_free(&c->hist);
    memset(c, 0, sizeof *c);
}

/* Opens path and checks it is an fm file of a format this build reads; returns the handle. */
static fm_h5 open_fm(const char *path, const char *want, char *err, int cap)
{
    fm_h5 f = fm_h5_open(path);
    if (f < 0) {
        FILE *probe = fopen(path, "rb");
        if (!probe) fm_errorf(err, cap, "cannot open %s: %s", path, strerror(errno));
        else fm_errorf(err, cap, "%s is not an HDF5 file (or is truncated): expected an fm %s", path, want);
        if (probe) fclose(probe);
        return -1;
    }
    char *format = NULL;
    int64_t version = 0;
    if (fm_h5_attr_read_str(f, "/", "fm_format", &format) || fm_h5_attr_read_i64(f, "/", "fm_version", &version)) {
        fm_errorf(err, cap, "%s is an HDF5 file but not fm's (no fm_format/fm_version attributes): expected an fm %s",
                  path, want);
    } else if (want && strcmp(format, want) != 0) {
        fm_errorf(err, cap, "%s is an fm %s file: expected an fm %s", path, format, want);
    } else if (version > FM_FORMAT_VERSION || version < 1) {
        fm_errorf(err, cap, "%s has fm format version %lld; this fmtrain reads versions 1 to %d: use a newer fmtrain",
                  path, (long long)version, FM_FORMAT_VERSION);
    } else {
        free(format);
        return f;
    }
    free(format);
    fm_h5_close(f);
    return -1;
}

int fm_ckpt_read(fm_ckpt *c, const char *path, char *err, int cap)
{
    memset(c, 0, sizeof *c);
    fm_h5 f = open_fm(path, "checkpoint", err, cap);
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
    } else if (fm_config_model(&c->mlp, &c->cfg, msg, sizeof msg)) {
        fm_errorf(err, cap, "%s: %s", path, msg);
    } else if (fm_h5_attr_read_i64(f, "/", "step", &step) || step < 0 ||
               fm_h5_read_i64(f, "/optim/step", &ostep, 1) || ostep != step) {
        fm_errorf(err, cap, "%s: step attribute and /optim/step are missing or disagree: the file is corrupt", path);
    } else {
        const size_t n = c->mlp.nparams;
        c->step = step;
        c->params = fm_malloc(sizeof(float) * n);
        c->m = fm_malloc(sizeof(float) * n);
        c->v = fm_malloc(sizeof(float) * n);
        if (read_layers(f, "/model", &c->mlp, c->params, err, cap, path) == 0 &&
            read_layers(f, "/optim/m", &c->mlp, c->m, err, cap, path) == 0 &&
            read_layers(f, "/optim/v", &c->mlp, c->v, err, cap, path) == 0) {
            if (fm_h5_shape(f, "/history/step", &rank, d) || rank != 1) {
                fm_errorf(err, cap, "%s: /history/step is missing: the file is corrupt", path);
            } else {
                fm_history_reserve(&c->hist, d[0] + 1);
                c->hist.n = d[0];
                if (fm_h5_read_i64(f, "/history/step", c->hist.step, d[0]) ||
                    fm_h5_read_f32(f, "/history/loss", c->hist.loss, d[0]) ||
                    fm_h5_read_f32(f, "/history/lr", c->hist.lr, d[0]) ||
                    fm_h5_read_f32(f, "/history/grad_norm", c->hist.grad_norm, d[0]) ||
                    fm_h5_read_f64(f, "/history/time", c->hist.time, d[0]))
                    fm_errorf(err, cap, "%s: the /history datasets are missing or of unequal length: the file is corrupt", path);
                else
                    rc = 0;
            }
        }
    }
    fm_h5_close(f);
    if (rc) fm_ckpt_free(c);
    return rc;
}

int fm_ckpt_info(const char *path, char *err, int cap)
{
    fm_h5 f = open_fm(path, NULL, err, cap);
    if (f < 0) return -1;
    char *format = NULL, *config = NULL, *solver = NULL;
    int64_t version = 0, step = -1, v;
    fm_h5_attr_read_str(f, "/", "fm_format", &format);
    fm_h5_attr_read_i64(f, "/", "fm_version", &version);
    printf("%s: fm %s, format version %lld\n", path, format, (long long)version);
    if (fm_h5_attr_read_i64(f, "/", "step", &step) == 0) printf("step: %lld\n", (long long)step);
    if (fm_h5_attr_read_i64(f, "/", "checkpoint_step", &v) == 0) printf("checkpoint_step: %lld\n", (long long)v);
    if (fm_h5_attr_read_str(f, "/", "solver", &solver) == 0) printf("solver: %s\n", solver);
    if (fm_h5_attr_read_i64(f, "/", "steps", &v) == 0) printf("steps: %lld\n", (long long)v);
    if (fm_h5_attr_read_i64(f, "/", "seed", &v) == 0) printf("seed: %lld\n", (long long)v);
    printf("datasets:\n");
    fm_h5_list(f, stdout);
    if (fm_h5_attr_read_str(f, "/", "config", &config) == 0) printf("config:\n%s", config);
    free(format);
    free(config);
    free(solver);
    fm_h5_close(f);
    return 0;
}
