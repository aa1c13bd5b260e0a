#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/config.h"

/* Loading `text` fails, and the message contains every one of the given fragments. */
static void expect_error(const char *text, const char *frag1, const char *frag2)
{
    fm_config c;
    char err[512] = "";
    fm_config_defaults(&c);
    int rc = fm_config_load_string(&c, text, "x.ini", err, sizeof err);
    CHECK(rc == -1, "accepted: %s", text);
    CHECK(strstr(err, frag1) && (!frag2 || strstr(err, frag2)), "message '%s' lacks '%s' / '%s'", err, frag1,
          frag2 ? frag2 : "");
    CHECK(strchr(err, '\n') == NULL, "message has more than one line: %s", err);
}

int main(void)
{
    fm_config c;
    char err[512];
    fm_config_defaults(&c);
    /* Defaults are the seed experiment's. */
    CHECK(c.steps == 5000 && c.batch == 1000 && c.hidden.n == 2 && c.hidden.v[0] == 1024 && c.hidden.v[1] == 16,
          "defaults");
    CHECK(strcmp(c.schedule, "sqrt") == 0 && c.eps == 1e-4 && c.lr == 1e-3 && c.sample_steps == 299, "defaults");

    const char *ini = "; a comment\n[train]\nsteps = 30\nbatch=64 ; inline\n[model]\nhidden = 8, 4 ,2\n"
                      "activation = tanh\n[optim]\nlr = 2.5e-4\n[output]\ndir = /tmp/some dir\n";
    CHECK(fm_config_load_string(&c, ini, "x.ini", err, sizeof err) == 0, "%s", err);
    CHECK(c.steps == 30 && c.batch == 64 && c.lr == 2.5e-4, "values: %ld %ld %g", c.steps, c.batch, c.lr);
    CHECK(c.hidden.n == 3 && c.hidden.v[0] == 8 && c.hidden.v[1] == 4 && c.hidden.v[2] == 2, "hidden list");
    /* lists of their own: the U-Net's channels, the data's shape (may be empty: a vector) */
    CHECK(c.channels.n == 3 && c.channels.v[2] == 128 && c.shape.n == 0, "channels and shape defaults");
    CHECK(fm_config_set(&c, "data.shape", "1,28,28", err, sizeof err) == 0 && c.shape.n == 3 && c.shape.v[1] == 28 &&
              c.hidden.n == 3 && fm_config_set(&c, "data.shape", "", err, sizeof err) == 0 && c.shape.n == 0,
          "data.shape set and emptied: %s", err);
    CHECK(strcmp(c.activation, "tanh") == 0 && strcmp(c.dir, "/tmp/some dir") == 0, "words");
    /* Command-line overrides. */
    CHECK(fm_config_set(&c, "train.steps", "1e3", err, sizeof err) == 0 && c.steps == 1000, "%s", err);
    CHECK(fm_config_set(&c, "sample.solver", "rk4", err, sizeof err) == 0, "%s", err);
    CHECK(fm_config_set(&c, "train.stepz", "3", err, sizeof err) == -1 && strstr(err, "--train.stepz=3") &&
              strstr(err, "allowed: steps, batch"), "%s", err);
    CHECK(fm_config_set(&c, "steps", "3", err, sizeof err) == -1 && strstr(err, "section.key"), "%s", err);
    CHECK(fm_config_set(&c, "train.steps", "0", err, sizeof err) == -1 && strstr(err, "from 1 to"), "%s", err);

    /* The dump reads back to the same config. */
    char *dump = fm_config_dump(&c);
    fm_config d;
    fm_config_defaults(&d);
    CHECK(fm_config_load_string(&d, dump, "dump", err, sizeof err) == 0, "%s", err);
    char diff[512];
    CHECK(memcmp(&c, &d, sizeof c) == 0, "dump does not round-trip:\n%s", dump);
    CHECK(fm_config_diff(diff, sizeof diff, &c, &d, 1) == 0, "%s", diff);
    d.hidden.v[1] = 5;
    d.seed = 9;
    d.steps = 77; /* may change on resume */
    CHECK(fm_config_diff(diff, sizeof diff, &c, &d, 1) == 2 && strstr(diff, "model.hidden (8,4,2 -> 8,5,2)") &&
              strstr(diff, "train.seed"), "%s", diff);
    CHECK(fm_config_diff(diff, sizeof diff, &c, &d, 0) == 1 && strstr(diff, "train.steps (1000 -> 77)"), "%s", diff);
    free(dump);

    /* Every bad input names the key, the value and what is allowed, on one line. */
    expect_error("[trian]\nsteps = 3\n", "x.ini:2: unknown section [trian]", "allowed: data, path");
    expect_error("[train]\nstepz = 3\n", "x.ini:2: unknown key 'stepz' in [train]", "allowed: steps");
    expect_error("[train]\nsteps = abc\n", "steps = 'abc'", "allowed: an integer from 1 to");
    expect_error("[train]\nsteps = 10x\n", "steps = '10x'", "integer");
    expect_error("[train]\nsteps = 0\n", "steps = '0'", "from 1 to");
    expect_error("[train]\nbatch = -5\n", "batch = '-5'", "from 1 to");
    expect_error("[train]\nsteps = 2.5\n", "steps = '2.5'", "integer");
    expect_error("[optim]\nlr = fast\n", "lr = 'fast'", "a number from 0 to");
    expect_error("[optim]\nlr = nan\n", "lr = 'nan'", "number");
    expect_error("[model]\nhidden = 1024,,16\n", "hidden = '1024,,16'", "comma-separated integers");
    expect_error("[model]\nhidden = 1024,16,\n", "hidden", "comma-separated");
    expect_error("[model]\nhidden = 64,0\n", "hidden = '64,0'", "from 1 to");
    expect_error("[model]\nhidden = \n", "hidden", "comma-separated");
    expect_error("[model]\nhidden = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n", "hidden", "1 to 15");
    expect_error("[model]\nchannels = 32,,64\n", "channels = '32,,64'", "comma-separated integers");
    expect_error("[model]\nchannels = \n", "channels", "allowed: 1 to 15");
    expect_error("[data]\nshape = 1,0,28\n", "shape = '1,0,28'", "allowed: empty, or 1 to 15");
    expect_error("[path]\nschedule = quadratic\n", "schedule = 'quadratic'", "allowed: sqrt linear cosine");
    expect_error("steps = 3\n", "outside any [section]", NULL);
    expect_error("[train]\njust words\n", "x.ini:2:", "key = value");
    /* The parser's own rules (inih's were silent): no continuation lines, each key once, a
     * section line closed, lines of any length. */
    expect_error("[train]\nsteps = 20\n  100\n", "x.ini:3:", "continuation lines are not supported");
    expect_error("[train]\nsteps = 20\n[optim]\nlr = 1\n[train]\nsteps = 3\n", "x.ini:6:", "set twice (first on line 2)");
    expect_error("[train\nsteps = 3\n", "x.ini:1:", "not a '[section]' line");
    expect_error("[train] x\nsteps = 3\n", "x.ini:1:", "not a '[section]' line");
    {
        char big[4096];
        int n = snprintf(big, sizeof big, "; ");
        memset(big + n, 'c', 3000);
        snprintf(big + n + 3000, sizeof big - (size_t)n - 3000, "\n[train]\nsteps = 17\n[output]\ndir = /%0300d\n", 7);
        fm_config_defaults(&c);
        CHECK(fm_config_load_string(&c, big, "x.ini", err, sizeof err) == 0 && c.steps == 17 && strlen(c.dir) == 301,
              "a 3000-character comment and a 301-character value: %s", err);
    }
    fm_config_defaults(&c);
    CHECK(fm_config_load_string(&c, "\xEF\xBB\xBF[train]\r\n  steps = 12 ; inline\r\n# c\n", "x.ini", err, sizeof err) == 0 &&
              c.steps == 12, "byte order mark, CRLF, an indented key, comments: %s", err);
    fm_config_defaults(&c);
    CHECK(fm_config_load_string(&c, "[output]\ndir = a;b\n", "x.ini", err, sizeof err) == 0 && strcmp(c.dir, "a;b") == 0,
          "';' inside a value is not a comment: %s", c.dir);

    /* Checks between keys. */
    fm_config_defaults(&c);
    c.dim = 3;
    CHECK(fm_config_validate(&c, err, sizeof err) == -1 && strstr(err, "gmm_ring"), "%s", err);
    fm_config_defaults(&c);
    CHECK(fm_config_validate(&c, err, sizeof err) == 0, "%s", err);
    return check_report("test_config");
}
