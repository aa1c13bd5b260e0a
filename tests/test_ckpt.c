/* Checkpoint round trip: what is written reads back equal bit for bit; files that are not
 * complete fm checkpoints of a known version are refused with a reason. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fm/ckpt.h"
#include "fm/h5io.h"
#include "fm/rng.h"
#include "fm/version.h"

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "ckpt_roundtrip.h5";
    char err[1024];
    fm_config cfg;
    fm_config_defaults(&cfg);
    fm_config_set(&cfg, "model.hidden", "33,7,5", err, sizeof err);
    fm_config_set(&cfg, "data.target", "gmm_random", err, sizeof err);
    fm_config_set(&cfg, "data.dim", "3", err, sizeof err);
    char *text = fm_config_dump(&cfg);
    fm_model m;
    fm_target target;
    CHECK(fm_model_build(&m, &cfg, err, sizeof err) == 0, "%s", err);
    CHECK(fm_target_build(&target, &cfg, NULL, err, sizeof err) == 0, "%s", err);
    const size_t n = m.nparams;
    float *p = malloc(sizeof(float) * n), *mo = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n);
    fm_rng_normal(p, 1, 0, 0, FM_STREAM_EVAL, (int)n);
    fm_rng_normal(mo, 2, 0, 0, FM_STREAM_EVAL, (int)n);
    fm_rng_uniform(v, 3, 0, 0, FM_STREAM_EVAL, (int)n);
    p[5] = -0.0f;
    p[6] = 1e-40f; /* a subnormal survives too */
    fm_history h = {0};
    for (int s = 1; s <= 250; s++) fm_history_push(&h, s, 1.0f / s, 1e-3f, (float)s, 0.01 * s, s % 50 ? NAN : 2.0f / s);

    unlink(path);
    float *ema = malloc(sizeof(float) * n);
    for (size_t k = 0; k < n; k++) ema[k] = 0.5f * p[k] + 0.25f;
    const fm_ckpt_state st = {text, &m, &target, p, mo, v, ema, 250, &h};
    CHECK(fm_ckpt_write(path, &st, err, sizeof err) == 0, "%s", err);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0, "the temporary file is left behind");
    fm_ckpt c;
    CHECK(fm_ckpt_read(&c, path, err, sizeof err) == 0, "%s", err);
    if (c.params) {
        CHECK(c.step == 250, "step %ld", c.step);
        CHECK(c.model.nparams == n && c.model.ntensors == 8 && c.model.dim == 3, "shape");
        CHECK(strcmp(c.model.tensors[7].name, "layer_3/bias") == 0 && c.model.tensors[0].shape[1] == 4,
              "tensor table: %s", c.model.tensors[7].name);
        CHECK(memcmp(c.params, p, sizeof(float) * n) == 0, "parameters differ");
        CHECK(memcmp(c.m, mo, sizeof(float) * n) == 0, "Adam m differs");
        CHECK(memcmp(c.v, v, sizeof(float) * n) == 0, "Adam v differs");
        CHECK(c.ema && memcmp(c.ema, ema, sizeof(float) * n) == 0, "the moving average differs or is missing");
        CHECK(strcmp(c.config_text, text) == 0, "config text differs");
        CHECK(memcmp(&c.cfg, &cfg, sizeof cfg) == 0, "parsed config differs");
        CHECK(c.hist.n == 250 && memcmp(c.hist.step, h.step, 250 * sizeof(int64_t)) == 0 &&
              memcmp(c.hist.loss, h.loss, 250 * sizeof(float)) == 0 &&
              memcmp(c.hist.time, h.time, 250 * sizeof(double)) == 0 &&
              memcmp(c.hist.grad_norm, h.grad_norm, 250 * sizeof(float)) == 0 &&
              memcmp(c.hist.val_loss, h.val_loss, 250 * sizeof(float)) == 0, "history differs");
    }
    fm_ckpt_free(&c);

    /* A truncated copy is refused. */
    char bad[1100];
    snprintf(bad, sizeof bad, "%s.truncated", path);
    FILE *in = fopen(path, "rb"), *out = fopen(bad, "wb");
    char buf[4096];
    size_t got, total = 0;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0 && total < 8192) {
        fwrite(buf, 1, got, out);
        total += got;
    }
    fclose(in);
    fclose(out);
    CHECK(fm_ckpt_read(&c, bad, err, sizeof err) == -1 && strstr(err, "is not an HDF5 file (or is truncated)"),
          "a truncated checkpoint: %s", err);

    /* A newer format version is refused, naming the version. */
    fm_h5 f = fm_h5_create(bad);
    fm_h5_attr_str(f, "/", "fm_format", "checkpoint");
    fm_h5_attr_i64(f, "/", "fm_version", FM_FORMAT_VERSION + 1);
    fm_h5_close(f);
    CHECK(fm_ckpt_read(&c, bad, err, sizeof err) == -1 && strstr(err, "version 2"), "newer version: %s", err);

    /* A right header without the datasets is refused as corrupt. */
    f = fm_h5_create(bad);
    fm_h5_attr_str(f, "/", "fm_format", "checkpoint");
    fm_h5_attr_i64(f, "/", "fm_version", FM_FORMAT_VERSION);
    fm_h5_attr_i64(f, "/", "step", 3);
    fm_h5_attr_str(f, "/", "config", text);
    int64_t three = 3;
    fm_h5_write_i64(f, "/optim/step", &three, 0, NULL);
    fm_h5_close(f);
    CHECK(fm_ckpt_read(&c, bad, err, sizeof err) == -1 &&
          strstr(err, "dataset /model/layer_0/weight is missing or not float [33, 4]"), "no datasets: %s", err);

    /* A missing file names the system's reason. */
    CHECK(fm_ckpt_read(&c, "/nonexistent/x.h5", err, sizeof err) == -1 && strstr(err, "No such file"), "%s", err);
    unlink(bad);
    unlink(path);
    free(p); free(mo); free(v); free(ema); free(text);
    fm_history_free(&h);
    fm_target_free(&target);
    fm_model_free(&m);
    return check_report("test_ckpt");
}
