#include "fm/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/act.h"
#include "fm/coupling.h"
#include "fm/error.h"
#include "fm/model.h"
#include "fm/names.h"
#include "fm/ode.h"
#include "fm/optim.h"
#include "fm/path.h"
#include "fm/target.h"

typedef enum { T_INT, T_REAL, T_WORD, T_TEXT, T_INTLIST } key_type;

typedef struct {
    const char *section, *key;
    key_type type;
    size_t off;
    double lo, hi;        /* inclusive range for numbers; list entries for T_INTLIST */
    const char *choices;  /* T_WORD: the allowed words, space separated, ... */
    fm_names names;       /* ... or the list of the module that defines them */
    const char *def;      /* default as written in an INI file */
    int fixed;            /* 1: a resumed run must keep the value of its checkpoint */
    const char *help;
} key_spec;

#define OFF(f) offsetof(fm_config, f)
#define BIG 1e18

static const key_spec keys[] = {
    {"data", "target", T_WORD, OFF(target), 0, 0, 0, fm_target_name, "gmm_ring", 1,
     "target distribution: the ring mixture of the seed, a mixture with random means, N(0, std^2 I), or the rows of data.file"},
    {"data", "file", T_TEXT, OFF(data_file), 0, 0, 0, 0, "", 0,
     "target = file: the dataset file (analysis/fm_data.py makes them; checked on resume by its fingerprint)"},
    {"data", "dim", T_INT, OFF(dim), 1, 1 << 24, 0, 0, "2", 1, "data dimension D (gmm_ring is 2-D; target = file: set from the file)"},
    {"data", "shape", T_INTLIST, OFF(shape), 1, 1 << 24, 0, 0, "", 1,
     "a row's shape, C,H,W for images (target = file: set from the file); empty: a vector of dim numbers"},
    {"data", "modes", T_INT, OFF(modes), 1, 100000, 0, 0, "11", 1, "mixture modes"},
    {"data", "radius", T_REAL, OFF(radius), 0, 1e6, 0, 0, "10", 1, "gmm_ring: radius of the circle of means"},
    {"data", "std", T_REAL, OFF(std), 1e-6, 1e6, 0, 0, "1", 1, "std of each mode (or of the gaussian target)"},
    {"data", "x_offset", T_REAL, OFF(x_offset), -1e6, 1e6, 0, 0, "0", 1, "gmm_ring: shift of the means along x"},
    {"data", "scale", T_REAL, OFF(scale), 0, 1e6, 0, 0, "10", 1, "gmm_random: means uniform in [-scale, scale]^D"},
    {"data", "mean_seed", T_INT, OFF(mean_seed), 0, 4294967295.0, 0, 0, "0", 1, "gmm_random: seed of the means"},
    {"data", "source_std", T_REAL, OFF(source_std), 1e-6, 1e6, 0, 0, "1", 1, "source x0 ~ N(0, source_std^2 I)"},
    {"path", "schedule", T_WORD, OFF(schedule), 0, 0, 0, fm_path_schedule_name, "sqrt", 1,
     "conditional path: sqrt (alpha=t, beta=sqrt(1-t)), linear (CondOT), cosine"},
    {"path", "eps", T_REAL, OFF(eps), 0, 1, 0, 0, "1e-4", 1, "sqrt: beta' = -0.5/(sqrt(1-t) + eps)"},
    {"path", "sigma_min", T_REAL, OFF(sigma_min), 0, 1, 0, 0, "0", 1, "linear: beta = 1 - (1 - sigma_min) t"},
    {"model", "type", T_WORD, OFF(model_type), 0, 0, 0, fm_model_type_name, "mlp", 1, "the vector field's model"},
    {"model", "hidden", T_INTLIST, OFF(hidden), 1, 1 << 20, 0, 0, "1024,16", 1, "hidden widths, comma separated"},
    {"model", "channels", T_INTLIST, OFF(channels), 1, 1 << 16, 0, 0, "32,64,128", 1,
     "unet: channels c_0 .. c_{L-1} of its L levels (the image is halved L-1 times)"},
    {"model", "res_blocks", T_INT, OFF(res_blocks), 1, 64, 0, 0, "2", 1, "unet: residual blocks per level"},
    {"model", "groups", T_INT, OFF(groups), 1, 1 << 16, 0, 0, "8", 1, "unet: GroupNorm groups (dividing every channel count)"},
    {"model", "activation", T_WORD, OFF(activation), 0, 0, 0, fm_act_name, "silu", 1, "activation between layers"},
    {"model", "time_embed", T_WORD, OFF(time_embed), 0, 0, 0, fm_model_time_embed_name, "raw", 1,
     "how t enters: raw = concat(x, t); fourier = sqrt 2 [sin 2 pi w t, cos 2 pi w t], w learnt (t_dim / 2 of them)"},
    {"model", "t_dim", T_INT, OFF(t_dim), 2, 1 << 16, 0, 0, "40", 1, "time_embed = fourier: the embedding's size (even)"},
    {"model", "classes", T_INT, OFF(model_classes), 0, 1 << 20, 0, 0, "0", 1,
     "K class labels (data with /y): an embedding of K + 1 rows (row K: no label); 0 = unconditional"},
    {"model", "y_dim", T_INT, OFF(y_dim), 1, 1 << 16, 0, 0, "40", 1, "classes > 0: the label embedding's size"},
    {"optim", "lr", T_REAL, OFF(lr), 0, 10, 0, 0, "1e-3", 0, "Adam learning rate"},
    {"optim", "beta1", T_REAL, OFF(beta1), 0, 0.999999, 0, 0, "0.9", 0, "Adam beta1"},
    {"optim", "beta2", T_REAL, OFF(beta2), 0, 0.999999999, 0, 0, "0.999", 0, "Adam beta2"},
    {"optim", "eps", T_REAL, OFF(adam_eps), 0, 1, 0, 0, "1e-8", 0, "Adam eps, added to sqrt(v_hat)"},
    {"optim", "clip", T_REAL, OFF(clip), 0, 1e12, 0, 0, "0", 0, "clip the global gradient norm to this; 0 = off"},
    {"optim", "schedule", T_WORD, OFF(lr_schedule), 0, 0, 0, fm_optim_schedule_name, "constant", 0,
     "learning rate after warmup: constant, or cosine decay to 0 at train.steps"},
    {"optim", "ema", T_REAL, OFF(ema), 0, 0.9999999, 0, 0, "0", 0,
     "decay of an exponential moving average of the weights (e.g. 0.999), kept in the checkpoint under /ema; 0 = off"},
    {"optim", "warmup", T_INT, OFF(warmup), 0, 1e9, 0, 0, "0", 0, "linear warmup steps"},
    {"train", "steps", T_INT, OFF(steps), 1, 1e9, 0, 0, "5000", 0, "optimiser steps in all (a resumed run continues to it)"},
    {"train", "batch", T_INT, OFF(batch), 1, 1e9, 0, 0, "1000", 1, "global batch B, split over the ranks"},
    {"train", "seed", T_INT, OFF(seed), 0, 4294967295.0, 0, 0, "0", 1, "seed of initialisation and of every (t, x0, z) draw"},
    {"train", "checkpoint_every", T_INT, OFF(checkpoint_every), 0, 1e9, 0, 0, "1000", 0, "checkpoint period in steps; 0 = only at the end"},
    {"train", "log_every", T_INT, OFF(log_every), 1, 1e9, 0, 0, "100", 0, "print step, loss, speed every this many steps"},
    {"train", "progress", T_WORD, OFF(progress), 0, 0, "auto line plain", 0, "auto", 0,
     "line: one progress line redrawn in place; plain: a line every log_every steps (logs); auto: line on a terminal, except under mpirun"},
    {"train", "history_every", T_INT, OFF(history_every), 1, 1e9, 0, 0, "1", 0, "record the loss every this many steps (and every step of the first 100)"},
    {"train", "keep_checkpoints", T_INT, OFF(keep_checkpoints), 0, 1e6, 0, 0, "0", 0, "also keep the last K numbered checkpoints checkpoint_STEP.h5"},
    {"train", "resume", T_WORD, OFF(resume), 0, 0, "auto never always", 0, "auto", 0,
     "auto: resume when OUTDIR/checkpoint.h5 exists; never: refuse an existing one; always: require one"},
    {"train", "microbatch", T_INT, OFF(microbatch), 1, 1e9, 0, 0, "64", 0,
     "samples per forward/backward pass within a rank's shard (cache tiling; same gradient up to rounding)"},
    {"train", "overlap", T_WORD, OFF(overlap), 0, 0, "on off", 0, "off", 0,
     "on: all-reduce each layer's gradient (MPI_Iallreduce) while the backward goes on below it; off: one MPI_Allreduce after the backward (see README, Performance)"},
    {"train", "cond_drop", T_REAL, OFF(cond_drop), 0, 1, 0, 0, "0.1", 0,
     "model.classes > 0: probability that a sample's label is replaced by 'no label' (classifier-free guidance)"},
    {"train", "eval_every", T_INT, OFF(eval_every), 0, 1e9, 0, 0, "0", 0,
     "the loss on the held-out rows (/x_test) every this many steps, into the history; 0 = never"},
    {"train", "eval_n", T_INT, OFF(eval_n), 1, 1e9, 0, 0, "2000", 0, "held-out rows the validation loss uses (the first ones)"},
    {"train", "deterministic", T_INT, OFF(deterministic), 0, 1 << 20, 0, 0, "0", 0,
     "K > 0: the global batch cut into K shards whose gradients are computed alone and summed in an order independent of the ranks (K a power of two: a fixed tree of float sums; other K: fixed point), so the run is the same bits on any number of ranks dividing K (and the same train.threads); 0 = off"},
    {"train", "coupling", T_WORD, OFF(coupling), 0, 0, 0, fm_coupling_name, "independent", 1,
     "pairs of x0 and z: independent draws, or ot: an optimal assignment (squared distance) over the whole global batch, the same on any number of ranks"},
    {"train", "t_dist", T_WORD, OFF(t_dist), 0, 0, 0, fm_path_t_dist_name, "uniform", 1,
     "training times: uniform on [0, 1), or logit_normal: t = sigmoid(t_mean + t_std n), n ~ N(0, 1)"},
    {"train", "t_mean", T_REAL, OFF(t_mean), -10, 10, 0, 0, "0", 1, "t_dist = logit_normal: the normal's mean"},
    {"train", "t_std", T_REAL, OFF(t_std), 1e-3, 10, 0, 0, "1", 1, "t_dist = logit_normal: the normal's std"},
    {"train", "threads", T_INT, OFF(threads), 1, 1024, 0, 0, "1", 0, "OpenBLAS threads per rank (ranks x threads <= cores)"},
    {"sample", "n", T_INT, OFF(sample_n), 0, 1e10, 0, 0, "1000", 0, "samples drawn after training; 0 = none"},
    {"sample", "steps", T_INT, OFF(sample_steps), 1, 1e7, 0, 0, "299", 0, "fixed-step solvers: steps on a uniform grid from t=0 to 1; dopri5: the grid its recorded trajectories are given on"},
    {"sample", "solver", T_WORD, OFF(solver), 0, 0, 0, fm_ode_solver_name, "euler", 0,
     "ODE solver: fixed steps (euler, midpoint, heun, rk4) or adaptive per trajectory (dopri5: Dormand-Prince 5(4), atol and rtol)"},
    {"sample", "atol", T_REAL, OFF(atol), 1e-9, 1, 0, 0, "1e-5", 0, "dopri5: absolute error tolerance per step"},
    {"sample", "rtol", T_REAL, OFF(rtol), 1e-6, 1, 0, 0, "1e-5", 0,
     "dopri5: relative error tolerance per step (float arithmetic: at least 1e-6)"},
    {"sample", "divergence", T_WORD, OFF(divergence), 0, 0, "auto exact hutchinson", 0, "auto", 0,
     "fmtrain logprob: the divergence exactly (dim Jacobian-vector products), by Hutchinson's estimate (one fixed Rademacher probe per point), or auto: exact up to dim 16"},
    {"sample", "guidance", T_REAL, OFF(guidance), -100, 100, 0, 0, "1", 0,
     "model.classes > 0: w of u(x,t,none) + w (u(x,t,y) - u(x,t,none)); 1 = conditional, 0 = unconditional"},
    {"sample", "classes", T_TEXT, OFF(sample_classes), 1, 0, 0, 0, "all", 0,
     "model.classes > 0: the labels of the trajectories: all (trajectory j gets j mod K), one label, or a list K1,K2,..."},
    {"sample", "weights", T_WORD, OFF(sample_weights), 0, 0, "ema raw", 0, "ema", 0,
     "the weights the sampler uses: ema (when the checkpoint has them, else raw) or raw"},
    {"sample", "seed", T_INT, OFF(sample_seed), 0, 4294967295.0, 0, 0, "1", 0, "seed of the sampler's x0 draws"},
    {"sample", "trajectories", T_INT, OFF(trajectories), 0, 1e7, 0, 0, "100", 0, "how many of the samples are recorded at every step (at most sample.n)"},
    {"sample", "batch", T_INT, OFF(sample_batch), 1, 1e7, 0, 0, "256", 0, "trajectories integrated at once per rank (memory)"},
    {"output", "dir", T_TEXT, OFF(dir), 1, 0, 0, 0, "out", 0, "output directory (the -o option overrides it)"},
};
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))

static const char *const sections[] = {"data", "path", "model", "optim", "train", "sample", "output"};
#define NSECTIONS 7

static int parse_long(long *out, const char *s)
{
    char *end;
    errno = 0;
    double d;
    long v = strtol(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0') {
        *out = v;
        return 0;
    }
    /* Accept integral scientific notation such as 1e6. */
    errno = 0;
    d = strtod(s, &end);
    if (errno || end == s || *end != '\0' || d != floor(d) || fabs(d) > 9e18) return -1;
    *out = (long)d;
    return 0;
}

static int parse_double(double *out, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int word_allowed(const char *choices, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, w, n) == 0) return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

/* The allowed words of a T_WORD key, space separated. */
static const char *choices_of(const key_spec *k, char *buf, size_t cap)
{
    return k->names ? fm_names_join(buf, cap, k->names, " ") : k->choices;
}

static const key_spec *find_key(const char *section, const char *key)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0) return &keys[i];
    return NULL;
}

static int section_known(const char *section)
{
    for (int i = 0; i < NSECTIONS; i++)
        if (strcmp(sections[i], section) == 0) return 1;
    return 0;
}

static void keys_of(char *out, size_t cap, const char *section)
{
    out[0] = '\0';
    for (int i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", len ? ", " : "", keys[i].key);
    }
}

/* Trims surrounding white space in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
    return s;
}

static int set_value(fm_config *c, const key_spec *k, const char *raw, char *err, int cap)
{
    char buf[FM_PATH_MAX];
    if (strlen(raw) >= sizeof buf) {
        fm_errorf(err, cap, "[%s] %s: value longer than %zu characters", k->section, k->key, sizeof buf - 1);
        return -1;
    }
    strcpy(buf, raw);
    char *v = trim(buf);
    char *field = (char *)c + k->off;
    switch (k->type) {
    case T_INT: {
        long x;
        if (parse_long(&x, v) || x < k->lo || x > k->hi) {
            fm_errorf(err, cap, "[%s] %s = '%s': allowed: an integer from %.0f to %.0f", k->section,
                      k->key, v, k->lo, k->hi);
            return -1;
        }
        *(long *)field = x;
        return 0;
    }
    case T_REAL: {
        double x;
        if (parse_double(&x, v) || x < k->lo || x > k->hi) {
            fm_errorf(err, cap, "[%s] %s = '%s': allowed: a number from %g to %g", k->section, k->key,
                      v, k->lo, k->hi);
            return -1;
        }
        *(double *)field = x;
        return 0;
    }
    case T_WORD: {
        char list[256];
        if (k->names ? fm_names_find(k->names, v) < 0 : !word_allowed(k->choices, v)) {
            fm_errorf(err, cap, "[%s] %s = '%s': allowed: %s", k->section, k->key, v, choices_of(k, list, sizeof list));
            return -1;
        }
        snprintf(field, FM_NAME_MAX, "%s", v);
        return 0;
    }
    case T_TEXT: /* lo = 1: may not be empty */
        if (!*v && k->lo > 0) {
            fm_errorf(err, cap, "[%s] %s is empty: allowed: a path", k->section, k->key);
            return -1;
        }
        snprintf(field, FM_PATH_MAX, "%s", v);
        return 0;
    case T_INTLIST: { /* an empty default: the list may be empty */
        fm_intlist *list = (fm_intlist *)field;
        int n = 0;
        char *save = NULL;
        const int may_be_empty = *k->def == '\0';
        fm_intlist parsed;
        memset(&parsed, 0, sizeof parsed); /* unused entries zero: configs compare with memcmp */
        if (!*v && may_be_empty) {
            *list = parsed;
            return 0;
        }
        int bad = (*v == '\0' || *v == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,") != NULL);
        for (char *tok = strtok_r(v, ",", &save); tok && !bad; tok = strtok_r(NULL, ",", &save)) {
            long x;
            if (n == FM_CONFIG_MAX_LIST - 1 || parse_long(&x, trim(tok)) || x < k->lo || x > k->hi) bad = 1;
            else parsed.v[n++] = (int)x;
        }
        if (bad || n == 0) {
            fm_errorf(err, cap, "[%s] %s = '%s': allowed: %s1 to %d comma-separated integers from %.0f to %.0f",
                      k->section, k->key, raw, may_be_empty ? "empty, or " : "", FM_CONFIG_MAX_LIST - 1, k->lo, k->hi);
            return -1;
        }
        parsed.n = n;
        *list = parsed;
        return 0;
    }
    default:
        FM_FATAL("[%s] %s: unknown key type %d", k->section, k->key, (int)k->type);
    }
}

void fm_config_defaults(fm_config *c)
{
    char err[256];
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NKEYS; i++)
        if (set_value(c, &keys[i], keys[i].def, err, sizeof err)) FM_FATAL("bad default: %s", err);
}

typedef struct {
    fm_config *c;
    char msg[512];
    int line[NKEYS]; /* the line that set each key (0: not yet): a key set twice is refused */
} ini_state;

/* One key = value: 0, or -1 with st->msg saying why. */
static int on_key(ini_state *st, const char *section, const char *name, const char *value, int line)
{
    const key_spec *k = find_key(section, name);
    if (!*section) {
        snprintf(st->msg, sizeof st->msg, "key '%s' outside any [section]", name);
    } else if (!section_known(section)) {
        snprintf(st->msg, sizeof st->msg, "unknown section [%s]: allowed: data, path, model, optim, train, sample, output",
                 section);
    } else if (!k) {
        char list[400];
        keys_of(list, sizeof list, section);
        snprintf(st->msg, sizeof st->msg, "unknown key '%s' in [%s]: allowed: %s", name, section, list);
    } else if (line > 0 && st->line[k - keys] > 0) {
        snprintf(st->msg, sizeof st->msg, "[%s] %s is set twice (first on line %d): allowed: each key once", section,
                 name, st->line[k - keys]);
    } else if (set_value(st->c, k, value, st->msg, sizeof st->msg) == 0) {
        if (line > 0) st->line[k - keys] = line;
        return 0;
    }
    return -1;
}

/* The INI text: "[section]", "key = value", blank lines and comments (';' or '#' first, or
 * " ;" after a value). Lines of any length; no continuation lines (an indented line is an
 * error, not part of the value above it: inih's reading made "  100" change steps silently). */
int fm_config_load_string(fm_config *c, const char *text, const char *origin, char *err, int cap)
{
    ini_state st;
    memset(&st, 0, sizeof st);
    st.c = c;
    char section[64] = "";
    const char *p = text;
    if (strncmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* a UTF-8 byte order mark */
    for (int line = 1; *p; line++) {
        const char *eol = strchr(p, '\n');
        const size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char *buf = fm_malloc(n + 1);
        memcpy(buf, p, n);
        buf[n] = '\0';
        p += n + (eol ? 1 : 0);
        const int indented = buf[0] == ' ' || buf[0] == '\t';
        char *s = trim(buf);
        int bad = 0;
        if (*s == '\0' || *s == ';' || *s == '#') {
            /* blank or comment */
        } else if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || *trim(close + 1) != '\0' || close - s - 1 >= (long)sizeof section) {
                snprintf(st.msg, sizeof st.msg, "'%.80s' is not a '[section]' line", s);
                bad = 1;
            } else {
                *close = '\0';
                snprintf(section, sizeof section, "%s", trim(s + 1));
            }
        } else if (!strchr(s, '=')) {
            snprintf(st.msg, sizeof st.msg, "'%.80s' is not a '[section]' or 'key = value' line%s", s,
                     indented ? " (continuation lines are not supported: write the value on its key's line)" : "");
            bad = 1;
        } else {
            char *eq = strchr(s, '='), *value = eq + 1;
            *eq = '\0';
            for (char *q = value; *q; q++) /* an inline comment: ';' after white space */
                if (*q == ';' && (q[-1] == ' ' || q[-1] == '\t')) {
                    *q = '\0';
                    break;
                }
            char *name = trim(s);
            bad = on_key(&st, section, name, trim(value), line);
        }
        free(buf);
        if (bad) {
            fm_errorf(err, cap, "%s:%d: %s", origin, line, st.msg);
            return -1;
        }
    }
    return 0;
}

int fm_config_set(fm_config *c, const char *dotted, const char *value, char *err, int cap)
{
    char section[64];
    const char *dot = strchr(dotted, '.');
    if (!dot || dot == dotted || (size_t)(dot - dotted) >= sizeof section) {
        fm_errorf(err, cap, "--%s: expected --section.key=value", dotted);
        return -1;
    }
    memcpy(section, dotted, (size_t)(dot - dotted));
    section[dot - dotted] = '\0';
    ini_state st;
    memset(&st, 0, sizeof st);
    st.c = c;
    if (on_key(&st, section, dot + 1, value, 0) == 0) return 0;
    fm_errorf(err, cap, "--%s=%s: %s", dotted, value, st.msg);
    return -1;
}

int fm_config_class_list(int *out, int cap, const char *spec)
{
    if (strcmp(spec, "all") == 0) return 0;
    int n = 0;
    for (const char *p = spec;; p++) {
        char *end;
        errno = 0;
        const long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || n == cap || (*end != ',' && *end != '\0')) return -1;
        out[n++] = (int)v;
        if (*end == '\0') return n;
        p = end;
    }
}

int fm_config_validate(const fm_config *c, char *err, int cap)
{
    if (strlen(c->dir) > FM_DIR_MAX) {
        fm_errorf(err, cap, "[output] dir (or -o) is %zu characters long: allowed: at most %d, so that every file name "
                  "fmtrain makes in it fits", strlen(c->dir), FM_DIR_MAX);
        return -1;
    }
    if (c->sample_n > 4294967295L || c->batch > 4294967295L) {
        fm_errorf(err, cap, "sample indices must fit in 32 bits");
        return -1;
    }
    int list[256];
    const int nl = fm_config_class_list(list, 256, c->sample_classes);
    for (int k = 0; k < nl && c->model_classes > 0; k++)
        if (list[k] >= c->model_classes) {
            fm_errorf(err, cap, "[sample] classes = '%s': label %d: allowed: all, or labels 0 .. %ld (model.classes)",
                      c->sample_classes, list[k], c->model_classes - 1);
            return -1;
        }
    if (nl < 0) {
        fm_errorf(err, cap, "[sample] classes = '%s': allowed: all, a label, or up to 256 labels K1,K2,...",
                  c->sample_classes);
        return -1;
    }
    if (c->deterministic > c->batch) {
        fm_errorf(err, cap, "[train] deterministic = %ld shards of batch = %ld: allowed: at most one shard per sample",
                  c->deterministic, c->batch);
        return -1;
    }
    if (c->deterministic > 0 && strcmp(c->overlap, "on") == 0) {
        fm_errorf(err, cap, "[train] deterministic = %ld sums the shards after the backward: allowed with overlap = off",
                  c->deterministic);
        return -1;
    }
    if (strcmp(c->coupling, "ot") == 0 && c->batch > FM_OT_MAX_BATCH) {
        fm_errorf(err, cap, "[train] coupling = ot with batch = %ld: the assignment holds batch^2 costs of 8 bytes on "
                  "every rank: allowed: batch up to %d (2 GB)", c->batch, FM_OT_MAX_BATCH);
        return -1;
    }
    if (c->eval_every > 0 && !fm_target_needs_data(c)) {
        fm_errorf(err, cap, "[train] eval_every = %ld needs held-out rows: data.target = file with /x_test (data.target = "
                  "%s has none)", c->eval_every, c->target);
        return -1;
    }
    if (c->model_classes > 0 && !fm_target_needs_data(c)) {
        fm_errorf(err, cap, "[model] classes = %ld needs labelled data: data.target = file with labels /y "
                  "(data.target = %s has none)", c->model_classes, c->target);
        return -1;
    }
    /* The target and the model check their own keys: build them once, before any work (a
     * dataset is checked when it is loaded; its model again with the file's dim then). */
    if (fm_target_needs_data(c)) {
        if (!*c->data_file) {
            fm_errorf(err, cap, "[data] target = %s needs data.file = PATH of a dataset file (analysis/fm_data.py "
                      "makes them)", c->target);
            return -1;
        }
    } else {
        fm_target t;
        if (fm_target_build(&t, c, NULL, err, cap)) return -1;
        fm_target_free(&t);
    }
    /* A dataset's model is built once its shape is known (its images set data.shape). */
    if (fm_target_needs_data(c) && c->shape.n == 0) return 0;
    fm_model m;
    if (fm_model_build(&m, c, err, cap)) return -1;
    fm_model_free(&m);
    return 0;
}

static void format_value(char *out, size_t cap, const fm_config *c, const key_spec *k)
{
    const char *field = (const char *)c + k->off;
    switch (k->type) {
    case T_INT:
        snprintf(out, cap, "%ld", *(const long *)field);
        break;
    case T_REAL: {
        /* Shortest text that reads back to the same double. */
        double v = *(const double *)field;
        snprintf(out, cap, "%.15g", v);
        if (strtod(out, NULL) != v) snprintf(out, cap, "%.17g", v);
        break;
    }
    case T_WORD:
    case T_TEXT:
        snprintf(out, cap, "%s", field);
        break;
    case T_INTLIST: {
        size_t len = 0;
        out[0] = '\0';
        const fm_intlist *list = (const fm_intlist *)field;
        for (int i = 0; i < list->n && len < cap; i++)
            len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? "," : "", list->v[i]);
        break;
    }
    default:
        FM_FATAL("[%s] %s: unknown key type %d", k->section, k->key, (int)k->type);
    }
}

char *fm_config_dump(const fm_config *c)
{
    size_t cap = 8192, len = 0;
    char *out = fm_malloc(cap);
    const char *section = "";
    out[0] = '\0';
    for (int i = 0; i < NKEYS; i++) {
        char v[FM_PATH_MAX];
        format_value(v, sizeof v, c, &keys[i]);
        if (cap - len < sizeof v + 128) {
            cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown) FM_FATAL("out of memory");
            out = grown;
        }
        if (strcmp(section, keys[i].section) != 0) {
            section = keys[i].section;
            len += (size_t)snprintf(out + len, cap - len, "%s[%s]\n", len ? "\n" : "", section);
        }
        len += (size_t)snprintf(out + len, cap - len, "%s = %s\n", keys[i].key, v);
    }
    return out;
}

int fm_config_diff(char *out, int cap, const fm_config *a, const fm_config *b, int fixed)
{
    int n = 0;
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < NKEYS; i++) {
        if (keys[i].fixed != fixed) continue;
        char va[FM_PATH_MAX], vb[FM_PATH_MAX];
        format_value(va, sizeof va, a, &keys[i]);
        format_value(vb, sizeof vb, b, &keys[i]);
        if (strcmp(va, vb) == 0) continue;
        n++;
        if (len < (size_t)cap)
            len += (size_t)snprintf(out + len, (size_t)cap - len, "%s%s.%s (%s -> %s)", n > 1 ? ", " : "",
                                    keys[i].section, keys[i].key, va, vb);
    }
    return n;
}

void fm_config_print_keys(void)
{
    printf("| key | default | meaning |\n|---|---|---|\n");
    for (int i = 0; i < NKEYS; i++) {
        const key_spec *k = &keys[i];
        printf("| `%s.%s` | `%s` | %s", k->section, k->key, k->def, k->help);
        char list[256];
        if (k->type == T_WORD) printf(" (one of: %s)", choices_of(k, list, sizeof list));
        else if (k->type == T_INT) printf(" (%.0f to %.0f)", k->lo, k->hi);
        else if (k->type == T_REAL) printf(" (%g to %g)", k->lo, k->hi);
        printf("%s |\n", k->fixed ? "; fixed on resume" : "");
    }
}
