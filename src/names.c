#include "fm/names.h"

#include <stdio.h>
#include <string.h>

int fm_names_find(fm_names names, const char *name)
{
    for (int i = 0; names(i); i++)
        if (strcmp(names(i), name) == 0) return i;
    return -1;
}

char *fm_names_join(char *out, size_t cap, fm_names names, const char *sep)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; names(i) && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? sep : "", names(i));
    return out;
}
