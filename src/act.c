#include "fm/act.h"

static const char *const names[] = {"silu", "relu", "tanh"};
_Static_assert(sizeof names / sizeof names[0] == FM_ACT_COUNT, "one name per activation");

const char *fm_act_name(int i) { return i >= 0 && i < FM_ACT_COUNT ? names[i] : 0; }
