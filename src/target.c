#include "fm/target.h"

#include <stdio.h>
#include <string.h>

#include "fm/error.h"
#include "fm/names.h"
#include "fm/target_file.h"
#include "fm/target_mixture.h"

/* The registry: one line per target. */
static const fm_target_ops *const targets[] = {
    &fm_target_gmm_ring_ops,
    &fm_target_gmm_random_ops,
    &fm_target_gaussian_ops,
    &fm_target_file_ops,
};
#define NTARGETS ((int)(sizeof targets / sizeof targets[0]))

const char *fm_target_name(int i) { return i >= 0 && i < NTARGETS ? targets[i]->name : NULL; }

static int find(const fm_config *c, char *err, int cap)
{
    return fm_names_require(fm_target_name, c->target, "[data] target", err, cap);
}

int fm_target_needs_data(const fm_config *c)
{
    char err[8];
    const int i = find(c, err, sizeof err);
    return i >= 0 && targets[i]->needs_data;
}

uint64_t fm_target_bytes(const fm_config *c)
{
    char err[8];
    const int i = find(c, err, sizeof err);
    return i >= 0 ? targets[i]->bytes(c) : 0;
}

int fm_target_build(fm_target *t, const fm_config *c, const fm_dataset *data, char *err, int cap)
{
    memset(t, 0, sizeof *t);
    const int i = find(c, err, cap);
    if (i < 0) return -1;
    t->ops = targets[i];
    t->data = data;
    if (t->ops->needs_data && !data) {
        fm_errorf(err, cap, "[data] target = %s draws from a dataset, and none was loaded", t->ops->name);
        return -1;
    }
    snprintf(t->about, sizeof t->about, "%s", t->ops->name);
    if (t->ops->build(t, c, err, cap)) {
        fm_target_free(t);
        return -1;
    }
    return 0;
}

void fm_target_free(fm_target *t)
{
    if (t->ops && t->impl) t->ops->free_impl(t->impl);
    memset(t, 0, sizeof *t);
}
