/* A named array inside a flat float buffer: a model's parameter tensors, what a target keeps
 * in the checkpoint. The checkpoint writes each under its name. */
#ifndef FM_TENSOR_H
#define FM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define FM_TENSOR_NAME 96
#define FM_TENSOR_RANK 4

typedef struct {
    char name[FM_TENSOR_NAME]; /* a path with '/' (a PyTorch state_dict path for parameters) */
    int rank;                  /* 0: a scalar */
    uint64_t shape[FM_TENSOR_RANK];
    size_t offset, count;      /* where it sits in the buffer, and its number of elements */
} fm_tensor;

#endif
