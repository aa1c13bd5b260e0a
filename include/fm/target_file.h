/* The target of a dataset file (data.target = file, data.file = PATH): global sample g of the
 * run is row perm_e(g mod N) of epoch e = g div N (fm/epoch.h), drawn from the node's shared copy
 * and mapped to [-1, 1]; its label comes with it. */
#ifndef FM_TARGET_FILE_H
#define FM_TARGET_FILE_H

#include "fm/target.h"

extern const fm_target_ops fm_target_file_ops;

#endif
