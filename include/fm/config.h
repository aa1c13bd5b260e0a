/* The run's configuration: INI sections [data] [path] [model] [optim] [train] [sample] [output],
 * every key overridable as --section.key=value. One table describes every key (type, default,
 * range, meaning), so parsing, validation, printing and the README's key list agree. */
#ifndef FM_CONFIG_H
#define FM_CONFIG_H

#define FM_NAME_MAX 32
#define FM_PATH_MAX 1024
/* The longest output directory: every name fmtrain makes in it ("/checkpoint_000000000.h5",
 * "/history.tsv.tmp", ...) must fit FM_PATH_MAX with room to spare. */
#define FM_DIR_MAX (FM_PATH_MAX - 64)
#define FM_CONFIG_MAX_LIST 16 /* entries of a list key, plus one */

/* A list key's values (model.hidden, model.channels, data.shape). */
typedef struct {
    int n;
    int v[FM_CONFIG_MAX_LIST - 1];
} fm_intlist;

typedef struct {
    /* [data] */
    char target[FM_NAME_MAX]; /* a name of fm_target_name */
    char data_file[FM_PATH_MAX]; /* target = file: the dataset */
    long dim, modes, mean_seed;
    fm_intlist shape; /* a row's shape: [C, H, W] for images (target = file: set from the file); empty: [dim] */
    double radius, std, x_offset, scale, source_std;
    /* [path] */
    char schedule[FM_NAME_MAX];
    double eps, sigma_min;
    /* [model] */
    char model_type[FM_NAME_MAX]; /* a name of fm_model_type_name */
    fm_intlist hidden;   /* mlp */
    fm_intlist channels; /* unet: c_0 .. c_{L-1} */
    long res_blocks, groups;
    char activation[FM_NAME_MAX], time_embed[FM_NAME_MAX];
    long t_dim, model_classes, y_dim;
    /* [optim] */
    double lr, beta1, beta2, adam_eps, clip, ema;
    char lr_schedule[FM_NAME_MAX];
    long warmup;
    /* [train] */
    long steps, batch, seed, checkpoint_every, log_every, history_every, keep_checkpoints, microbatch, threads;
    long deterministic; /* K virtual shards summed exactly: the same bits on any P dividing K; 0 = off */
    double cond_drop;
    long eval_every, eval_n;
    char coupling[FM_NAME_MAX]; /* a name of fm_coupling_name */
    char t_dist[FM_NAME_MAX];   /* a name of fm_path_t_dist_name */
    double t_mean, t_std;       /* logit_normal: t = sigmoid(t_mean + t_std n) */
    char resume[FM_NAME_MAX]; /* auto | never | always */
    char overlap[FM_NAME_MAX]; /* on | off */
    char progress[FM_NAME_MAX]; /* auto | line | plain */
    /* [sample] */
    long sample_n, sample_steps, sample_seed, trajectories, sample_batch;
    char solver[FM_NAME_MAX];
    double atol, rtol;          /* adaptive solvers */
    char divergence[FM_NAME_MAX]; /* logprob: auto | exact | hutchinson */
    double guidance;
    char sample_classes[FM_PATH_MAX]; /* all | K | K1,K2,... */
    char sample_weights[FM_NAME_MAX]; /* ema | raw */
    /* [output] */
    char dir[FM_PATH_MAX];
} fm_config;

void fm_config_defaults(fm_config *c);

/* Parses INI text (origin names it in messages); 0 on success, -1 with one line in err. */
int fm_config_load_string(fm_config *c, const char *text, const char *origin, char *err, int cap);

/* Sets one key from "section.key" and a value string; 0, or -1 with one line in err. */
int fm_config_set(fm_config *c, const char *dotted, const char *value, char *err, int cap);

/* Checks between keys: the target and the model build (a ring target is 2-D, ...), sample
 * indices fit; 0, or -1 with err. */
int fm_config_validate(const fm_config *c, char *err, int cap);

/* sample.classes: "all" gives 0 (trajectory j gets label j mod K); "3" or "1,4,7" the list
 * (trajectory j gets list[j mod count]) into out and its count; -1 when malformed or longer than
 * cap. */
int fm_config_class_list(int *out, int cap, const char *spec);

/* The effective config as INI text (malloc'd; caller frees). */
char *fm_config_dump(const fm_config *c);

/* The keys whose values differ between a and b, as "section.key (old -> new)" joined by ", "
 * into out; fixed = 1: only the keys a resume must not change (model, target, path, seed,
 * batch), fixed = 0: only the others. Returns how many differ. */
int fm_config_diff(char *out, int cap, const fm_config *a, const fm_config *b, int fixed);

/* Writes the table of keys (name, default, meaning) as Markdown, for the README. */
void fm_config_print_keys(void);

#endif
