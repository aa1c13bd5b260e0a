/* Activations between layers: the enum the kernels switch on, and their names. */
#ifndef FM_ACT_H
#define FM_ACT_H

typedef enum { FM_ACT_SILU = 0, FM_ACT_RELU = 1, FM_ACT_TANH = 2, FM_ACT_COUNT } fm_act;

/* "silu" "relu" "tanh": the list of fm/names.h. */
const char *fm_act_name(int i);

#endif
