/* Lists of names (solvers, schedules, activations, models, targets), each spelt once where its
 * table is defined. A list is a function: names(i) is the i-th name, NULL past the end. */
#ifndef FM_NAMES_H
#define FM_NAMES_H

#include <stddef.h>

typedef const char *(*fm_names)(int i);

/* The index of name in the list, or -1. */
int fm_names_find(fm_names names, const char *name);

/* The index of name in the list, or -1 with "KEY = 'name': allowed: a, b, c" in err (key names
 * the config key, e.g. "[model] type"). */
int fm_names_require(fm_names names, const char *name, const char *key, char *err, int cap);

/* The names joined by sep into out ("euler midpoint rk4"); returns out. */
char *fm_names_join(char *out, size_t cap, fm_names names, const char *sep);

#endif
