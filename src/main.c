/* fmtrain: the command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fm/ckpt.h"
#include "fm/comm.h"
#include "fm/config.h"
#include "fm/error.h"
#include "fm/file.h"
#include "fm/data_load.h"
#include "fm/isa.h"
#include "fm/kernels.h"
#include "fm/logprob_run.h"
#include "fm/progress.h"
#include "fm/sample_run.h"
#include "fm/stop.h"
#include "fm/target.h"
#include "fm/model.h"
#include "fm/train.h"
#include "fm/version.h"

static const char usage[] =
    "usage: fmtrain [train] -c CONFIG.ini [-o OUTDIR] [--resume] [--SECTION.KEY=VALUE ...]\n"
    "       fmtrain sample --checkpoint FILE.h5 [-o SAMPLES.h5] [--sample.KEY=VALUE ...]\n"
    "       fmtrain logprob --checkpoint FILE.h5 [--data DATA.h5] [-o LOGPROB.h5] [--sample.KEY=VALUE ...]\n"
    "       fmtrain info FILE.h5\n"
    "       fmtrain keys        (every config key, its default and meaning)\n"
    "       fmtrain --help | --version\n"
    "\n"
    "train   trains a flow matching model, data-parallel over the MPI ranks, writing\n"
    "        OUTDIR/checkpoint.h5 (atomically replaced) and, when sample.n > 0, OUTDIR/samples.h5.\n"
    "        OUTDIR defaults to output.dir. An existing OUTDIR/checkpoint.h5 is resumed\n"
    "        (train.resume = auto); --resume requires one; train.resume = never refuses one.\n"
    "sample  integrates sample.n trajectories of a checkpoint's model, split over the ranks, into\n"
    "        SAMPLES.h5 (default: samples.h5 beside the checkpoint).\n"
    "logprob integrates the reverse ODE with the divergence to the exact log-likelihood log p(x)\n"
    "        of points: every row of DATA.h5 (/x), or sample.n draws of the checkpoint's target;\n"
    "        into LOGPROB.h5 (default: logprob.h5 beside the checkpoint). The solver: the [sample] keys.\n"
    "info    prints what a checkpoint, samples or history.tsv file holds.\n"
    "\n"
    "Run under MPI: mpirun -np 64 fmtrain -c jobs/gmm11.ini -o runs/x\n"
    "Exit status: 0 done; 1 error (one line on stderr says what and how to fix it);\n"
    "75 stopped by SIGTERM, SIGINT or SIGUSR1 with a checkpoint written: run the same command to resume.\n";

/* An error every rank knows alike (bad command line or config): said once, all end together. */
static _Noreturn void fail_all(const char *msg)
{
    if (fm_comm_rank() == 0) fm_error_print(msg);
    fm_comm_exit(1);
}

/* Rank 0 reads the file; every rank gets its text (or the failure) by broadcast. */
static char *read_text_bcast(const char *path, char *err, int cap)
{
    long len = -1;
    char *text = NULL;
    if (fm_comm_rank() == 0) {
        FILE *f = fm_file_open_regular(path, "config file", err, cap);
        struct stat st;
        if (f && (fstat(fileno(f), &st) || st.st_size > (1 << 20))) {
            fm_errorf(err, cap, "config file %s is larger than 1 MiB: not a config", path);
        } else if (f) {
            text = fm_malloc((size_t)st.st_size + 1);
            len = (long)fread(text, 1, (size_t)st.st_size, f);
            text[len] = '\0';
            const char *nul = memchr(text, '\0', (size_t)len);
            if (ferror(f) || nul) {
                if (nul) fm_errorf(err, cap, "config file %s has a NUL byte at offset %ld: allowed: text", path, (long)(nul - text));
                else fm_errorf(err, cap, "cannot read config file %s: %s", path, strerror(errno));
                free(text);
                text = NULL;
                len = -1;
            }
        }
        if (f) fclose(f);
    }
    fm_comm_bcast(&len, sizeof len);
    if (len < 0) {
        free(text);
        fm_comm_bcast(err, (size_t)cap);
        return NULL;
    }
    if (!text) text = fm_malloc((size_t)len + 1);
    fm_comm_bcast(text, (size_t)len + 1);
    return text;
}

/* mkdir -p on rank 0, then a check that the directory can be written; agreed by all. */
static void make_outdir(const char *dir)
{
    char err[FM_PATH_MAX + 256] = "";
    if (fm_comm_rank() == 0) {
        char buf[FM_PATH_MAX];
        snprintf(buf, sizeof buf, "%s", dir);
        for (char *p = buf + 1; ; p++) {
            if (*p == '/' || *p == '\0') {
                char c = *p;
                *p = '\0';
                if (mkdir(buf, 0777) && errno != EEXIST) {
                    fm_errorf(err, sizeof err, "cannot create output directory %s: %s", buf, strerror(errno));
                    break;
                }
                *p = c;
                if (!c) break;
            }
        }
        struct stat st;
        if (!*err && (stat(dir, &st) || !S_ISDIR(st.st_mode)))
            fm_errorf(err, sizeof err, "output directory %s is not a directory", dir);
        else if (!*err && access(dir, W_OK | X_OK))
            fm_errorf(err, sizeof err, "output directory %s is not writable: %s (choose another -o)", dir, strerror(errno));
    }
    fm_comm_bcast(err, sizeof err);
    if (*err) fail_all(err);
}

/* --section.key=value arguments into cfg; a command other than train (only_sample names it) takes
 * [sample] keys only (and threads). */
static void apply_overrides(fm_config *cfg, int argc, char **argv, int first, const char *only_sample)
{
    char err[1024];
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !strchr(a, '.')) continue;
        char key[256];
        const char *eq = strchr(a, '=');
        if (!eq || (size_t)(eq - a - 2) >= sizeof key) {
            fm_errorf(err, sizeof err, "%s: expected --section.key=value", a);
            fail_all(err);
        }
        memcpy(key, a + 2, (size_t)(eq - a - 2));
        key[eq - a - 2] = '\0';
        if (only_sample && strncmp(key, "sample.", 7) != 0 && strcmp(key, "train.threads") != 0) {
            fm_errorf(err, sizeof err, "%s: fmtrain %s takes only --sample.KEY=VALUE (and --train.threads)", a,
                      only_sample);
            fail_all(err);
        }
        if (fm_config_set(cfg, key, eq + 1, err, sizeof err)) fail_all(err);
    }
}

/* Collective: what the run will hold per rank before it holds it (the parameters, gradient, Adam
 * moments and moving average, the target; activations not counted), said, and refused when this
 * node's ranks together would need over 80% of its memory. Before fm_config_validate, which
 * builds the target. */
static void check_memory(const fm_config *cfg, int ranks)
{
    char err[512];
    fm_model m;
    if (fm_model_build(&m, cfg, err, sizeof err)) return; /* fm_config_validate says why */
    const double params = 4.0 * (double)m.nparams, target = (double)fm_target_bytes(cfg);
    fm_model_free(&m);
    const double state = params * (cfg->ema > 0 ? 5 : 4) + target;
    const double ckpt = params * (cfg->ema > 0 ? 4 : 3) + target / 2;
    const double have = fm_file_node_memory();
    if (!fm_comm_all_ok(have <= 0 || state * ranks <= 0.8 * have)) { /* rank 0 says it with its node's figures */
        fm_errorf(err, sizeof err, "the run needs about %.0f MB a rank (parameters and optimiser state %.0f MB, target "
                  "%.0f MB) x %d ranks on a node of %.0f MB: allowed: at most 80%% of a node's memory (a smaller model "
                  "or target, or fewer ranks per node)", state / 1e6, (state - target) / 1e6, target / 1e6, ranks,
                  have / 1e6);
        fail_all(err);
    }
    if (fm_comm_rank() == 0 && state > 1e8) {
        printf("memory: about %.0f MB a rank before activations (parameters and optimiser state %.0f MB, target "
               "%.0f MB); each checkpoint about %.0f MB\n", state / 1e6, (state - target) / 1e6, target / 1e6, ckpt / 1e6);
        fflush(stdout);
    }
}

/* The memory, the config's own checks, then train.threads against this node: more threads than cores is
 * refused (OpenBLAS spins them all: a 1024-thread run crawled for minutes), and threads x ranks
 * over the cores of the node is said once (the ranks would share cores). */
static void validate(const fm_config *cfg)
{
    char err[1024];
    const int ranks = fm_comm_node_ranks();
    check_memory(cfg, ranks);
    if (fm_config_validate(cfg, err, sizeof err)) fail_all(err);
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int over = cores > 0 && cfg->threads > cores;
    if (fm_comm_all_ok(!over) == 0) {
        fm_errorf(err, sizeof err, "[train] threads = %ld but a node of this job has fewer cores: allowed: at most "
                  "the cores of a node (%ld here)", cfg->threads, cores);
        fail_all(err);
    }
    over = cores > 0 && cfg->threads > 1 && cfg->threads * ranks > cores;
    if (fm_comm_rank() == 0 && over)
        fprintf(stderr, "fmtrain: warning: %d ranks x %ld threads on a node of %ld cores: they will share cores "
                "(slower); use fewer ranks per node or a lower train.threads\n", ranks, cfg->threads, cores);
}

/* Before MPI_Init: srun started N tasks without a PMI that Open MPI speaks (srun --mpi=none, or a
 * PMI it lacks). Open MPI would fail obscurely or, worse, start N independent copies. */
static void check_launcher_env(void)
{
    const char *n = getenv("SLURM_STEP_NUM_TASKS");
    if (!n || atol(n) <= 1 || getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("OMPI_COMM_WORLD_SIZE")) return;
    const char *id = getenv("SLURM_PROCID");
    if (!id || atol(id) == 0)
        fprintf(stderr, "fmtrain: error: SLURM started %ld tasks but MPI sees 1 rank (no PMIx or PMI in the "
                "environment): use srun --mpi=pmix (or mpirun inside the allocation)\n", atol(n));
    exit(1);
}

/* After MPI_Init: srun started N tasks but each sees an MPI world of one. */
static void check_launcher(void)
{
    const char *n = getenv("SLURM_STEP_NUM_TASKS");
    if (n && atol(n) > 1 && fm_comm_size() == 1) {
        char err[512];
        fm_errorf(err, sizeof err, "SLURM started %ld tasks but MPI sees 1 rank: the launcher lacks the right PMI; "
                  "use srun --mpi=pmix (or mpirun inside the allocation)", atol(n));
        fail_all(err);
    }
}

static int cmd_train(int argc, char **argv, int first)
{
    const char *config_path = NULL, *outdir = NULL;
    int resume = 0;
    char err[FM_PATH_MAX + 256];
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) config_path = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (strncmp(a, "--", 2) == 0 && strchr(a, '.')) continue; /* an override, applied below */
        else {
            fm_errorf(err, sizeof err, "unexpected argument '%s' (see fmtrain --help)", a);
            fail_all(err);
        }
    }
    if (!config_path) fail_all("no config file: give -c CONFIG.ini (see fmtrain --help)");
    char *text = read_text_bcast(config_path, err, sizeof err);
    if (!text) fail_all(err);
    fm_config cfg;
    fm_config_defaults(&cfg);
    int rc = fm_config_load_string(&cfg, text, config_path, err, sizeof err);
    free(text);
    if (rc) fail_all(err);
    apply_overrides(&cfg, argc, argv, first, NULL);
    if (outdir && strlen(outdir) >= sizeof cfg.dir) {
        fm_errorf(err, sizeof err, "-o is %zu characters long: allowed: at most %d", strlen(outdir), FM_DIR_MAX);
        fail_all(err);
    }
    if (outdir) snprintf(cfg.dir, sizeof cfg.dir, "%s", outdir);
    if (resume) snprintf(cfg.resume, sizeof cfg.resume, "always");
    validate(&cfg);
    if (cfg.deterministic > 0 && cfg.deterministic % fm_comm_size()) {
        fm_errorf(err, sizeof err, "[train] deterministic = %ld on %d ranks: allowed: a number of ranks that divides %ld",
                  cfg.deterministic, fm_comm_size(), cfg.deterministic);
        fail_all(err);
    }
    make_outdir(cfg.dir);
    return fm_train_run(&cfg, cfg.dir);
}

/* What sample and logprob read of a checkpoint, on every rank: its config with the command's
 * --sample.KEY overrides, its model, and the weights sample.weights picks. */
typedef struct {
    fm_ckpt c;
    fm_config cfg;
    fm_model model;
    int ema;
    long step;
} loaded;

/* The command's --checkpoint, -o and (logprob) --data arguments. */
static void parse_args(const char **ckpt, const char **out, const char **data, int argc, char **argv, int first)
{
    char err[FM_PATH_MAX + 64];
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--checkpoint") && i + 1 < argc) *ckpt = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) *out = argv[++i];
        else if (data && !strcmp(a, "--data") && i + 1 < argc) *data = argv[++i];
        else if (strncmp(a, "--", 2) == 0 && strchr(a, '.')) continue;
        else {
            fm_errorf(err, sizeof err, "unexpected argument '%s' (see fmtrain --help)", a);
            fail_all(err);
        }
    }
    if (!*ckpt) fail_all("no checkpoint: give --checkpoint OUTDIR/checkpoint.h5");
}

static void load_checkpoint(loaded *L, const char *ckpt_path, const char *cmd, int argc, char **argv, int first)
{
    char err[FM_PATH_MAX + 512];
    /* Rank 0 reads the checkpoint; the others get its config text, step and parameters. */
    memset(L, 0, sizeof *L);
    long len = -1;
    if (fm_comm_rank() == 0 && fm_ckpt_read(&L->c, ckpt_path, err, sizeof err) == 0) {
        len = (long)strlen(L->c.config_text);
        L->step = L->c.step;
    }
    fm_comm_bcast(&len, sizeof len);
    if (len < 0) fail_all(err);
    fm_comm_bcast(&L->step, sizeof L->step);
    if (fm_comm_rank() != 0) L->c.config_text = fm_calloc((size_t)len + 1);
    fm_comm_bcast(L->c.config_text, (size_t)len + 1);
    fm_config_defaults(&L->cfg);
    if (fm_config_load_string(&L->cfg, L->c.config_text, ckpt_path, err, sizeof err)) fail_all(err);
    apply_overrides(&L->cfg, argc, argv, first, cmd);
    validate(&L->cfg);
    fm_kern_blas_threads((int)L->cfg.threads);
    if (fm_model_build(&L->model, &L->cfg, err, sizeof err)) fail_all(err);
    /* The moving average when the checkpoint has one and sample.weights asks for it. */
    L->ema = fm_comm_rank() == 0 && L->c.ema && strcmp(L->cfg.sample_weights, "ema") == 0;
    fm_comm_bcast(&L->ema, sizeof L->ema);
    if (fm_comm_rank() != 0) L->c.params = fm_malloc(sizeof(float) * L->model.nparams);
    else if (L->ema) memcpy(L->c.params, L->c.ema, sizeof(float) * L->model.nparams);
    fm_comm_bcast(L->c.params, sizeof(float) * L->model.nparams);
    fm_comm_bcast(&L->c.rows, sizeof L->c.rows);
}

static void loaded_free(loaded *L)
{
    fm_model_free(&L->model);
    fm_ckpt_free(&L->c);
}

/* -o, or NAME beside the checkpoint. */
static void output_path(char *path, size_t cap, const char *out, const char *ckpt_path, const char *name)
{
    const char *slash = strrchr(ckpt_path, '/');
    const int n = out ? snprintf(path, cap, "%s", out)
                      : snprintf(path, cap, "%.*s%s", slash ? (int)(slash - ckpt_path + 1) : 0, ckpt_path, name);
    if (n < 0 || (size_t)n >= cap) {
        char err[128];
        fm_errorf(err, sizeof err, "the output path is over %zu characters long: allowed: at most %d", cap, FM_PATH_MAX - 8);
        fail_all(err);
    }
}

static int cmd_sample(int argc, char **argv, int first)
{
    const char *ckpt_path = NULL, *out = NULL;
    char err[FM_PATH_MAX + 512], path[FM_PATH_MAX + 32];
    parse_args(&ckpt_path, &out, NULL, argc, argv, first);
    loaded L;
    load_checkpoint(&L, ckpt_path, "sample", argc, argv, first);
    output_path(path, sizeof path, out, ckpt_path, "samples.h5");
    if (fm_sample_run_may_write(path, "samples", err, sizeof err)) fail_all(err);
    if (L.cfg.sample_n < 1) fail_all("--sample.n must be at least 1 for fmtrain sample");
    char *text = fm_config_dump(&L.cfg);
    const int rc = fm_sample_run(path, &L.cfg, text, &L.model, L.c.params, L.ema, &L.c.rows, L.step, err, sizeof err);
    if (rc < 0 && fm_comm_rank() == 0) fm_error_print(err);
    free(text);
    loaded_free(&L);
    return rc < 0 ? 1 : rc;
}

static int cmd_logprob(int argc, char **argv, int first)
{
    const char *ckpt_path = NULL, *out = NULL, *data_path = NULL;
    char err[FM_PATH_MAX + 512], path[FM_PATH_MAX + 32], points[FM_PATH_MAX + 64];
    parse_args(&ckpt_path, &out, &data_path, argc, argv, first);
    loaded L;
    load_checkpoint(&L, ckpt_path, "logprob", argc, argv, first);
    output_path(path, sizeof path, out, ckpt_path, "logprob.h5");
    if (fm_sample_run_may_write(path, "logprob", err, sizeof err)) fail_all(err);
    if (!L.model.ops->jvp) {
        fm_errorf(err, sizeof err, "fmtrain logprob needs the divergence of the field, which model.type = %s does not "
                  "provide: allowed: mlp", L.model.ops->name);
        fail_all(err);
    }
    fm_data data = {0};
    if (data_path) {
        if (fm_data_load(&data, data_path, err, sizeof err)) fail_all(err);
        if (data.data.dim != L.model.dim) {
            fm_errorf(err, sizeof err, "%s: rows of %d numbers, but the model's are %d", data_path, data.data.dim,
                      L.model.dim);
            fail_all(err);
        }
        snprintf(points, sizeof points, "%s", data_path);
    } else if (fm_target_needs_data(&L.cfg)) {
        fail_all("the checkpoint's target is a dataset file: give the points with --data FILE.h5");
    } else if (L.cfg.sample_n < 1) {
        fail_all("--sample.n must be at least 1 for fmtrain logprob without --data (the number of target draws)");
    } else {
        snprintf(points, sizeof points, "target %s (sample.seed %ld)", L.cfg.target, L.cfg.sample_seed);
    }
    char *text = fm_config_dump(&L.cfg);
    const int rc = fm_logprob_run(path, &L.cfg, text, &L.model, L.c.params, L.ema, data_path ? &data.data : NULL,
                                  points, L.step, err, sizeof err);
    if (rc < 0 && fm_comm_rank() == 0) fm_error_print(err);
    free(text);
    if (data_path) fm_data_free(&data);
    loaded_free(&L);
    return rc < 0 ? 1 : rc;
}

static int cmd_info(int argc, char **argv, int first)
{
    if (first + 1 != argc) fail_all("usage: fmtrain info FILE.h5");
    char err[FM_PATH_MAX + 256];
    int ok = 1;
    const char *path = argv[first];
    const size_t len = strlen(path);
    const int text = len > 4 && strcmp(path + len - 4, ".tsv") == 0;
    if (fm_comm_rank() == 0 && (text ? fm_progress_info(path, err, sizeof err) : fm_ckpt_info(path, err, sizeof err))) {
        fm_error_print(err);
        ok = 0;
    }
    return fm_comm_all_ok(ok) ? 0 : 1;
}

int main(int argc, char **argv)
{
    check_launcher_env();
    fm_comm_init(&argc, &argv);
    fm_stop_install();
    char err[256];
    if (fm_isa_init(err, sizeof err)) fail_all(err); /* every rank reads the same FM_ISA */
    const char *cmd = argc > 1 ? argv[1] : "--help";
    int status;
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (fm_comm_rank() == 0) fputs(usage, stdout);
        status = 0;
    } else if (!strcmp(cmd, "--version")) {
        if (fm_comm_rank() == 0)
            printf("fmtrain %s (%s; file format %d; kernels %s)\n", fm_version_release(), fm_version_git(),
                   FM_FORMAT_VERSION, fm_isa_name(fm_isa_active()));
        status = 0;
    } else if (!strcmp(cmd, "keys")) {
        if (fm_comm_rank() == 0) fm_config_print_keys();
        status = 0;
    } else if (!strcmp(cmd, "sample")) {
        check_launcher();
        status = cmd_sample(argc, argv, 2);
    } else if (!strcmp(cmd, "logprob")) {
        check_launcher();
        status = cmd_logprob(argc, argv, 2);
    } else if (!strcmp(cmd, "info")) {
        status = cmd_info(argc, argv, 2);
    } else {
        check_launcher();
        status = cmd_train(argc, argv, strcmp(cmd, "train") ? 1 : 2);
    }
    fflush(stdout);
    fm_comm_exit(status);
}
