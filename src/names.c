#include "fm/names.h"

#include <stdio.h>
#include <string.h>

#include "fm/error.h"

int fm_names_find(fm_names names, const char *name)
{
    for (int i = 0; names(i); i++)
        if (strcmp(names(i), name) == 0) return i;
    return -1;
}

int fm_names_require(fm_names names, const char *name, const char *key, char *err, int cap)
{
    const int i = fm_names_find(names, name);
    if (i < 0) {
        char list[256];
        fm_errorf(err, cap, "%s = '%s': allowed: %s", key, name, fm_names_join(list, sizeof list, names, ", "));
    }
    return i;
}

char *fm_names_join(char *out, size_t cap, fm_names names, const char *sep)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; names(i) && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? sep : "", names(i));
    return out;
}
