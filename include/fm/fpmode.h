/* The floating-point mode every thread that computes runs in: subnormal floats flushed to zero,
 * as results (FTZ) and as inputs (DAZ). A trained model drives saturated activations and their
 * gradients below FLT_MIN; without this each such value costs a microcode assist (about a hundred
 * cycles on x86), and the trained seed model ran 2.5 times slower than a fresh one. Results stay
 * the same across the scalar, AVX2 and AVX-512 builds (all obey the same MXCSR) and across rank
 * counts; they differ from IEEE gradual underflow only in values below 1.2e-38. */
#ifndef FM_FPMODE_H
#define FM_FPMODE_H

/* Sets FTZ and DAZ in the calling thread (x86-64: MXCSR; AArch64: FPCR.FZ; elsewhere nothing).
 * Every fm executable runs it before main and before any library starts a thread (src/fpmode.c),
 * so the threads OpenBLAS starts have it; the trainer and the sampler set it again and check it. */
void fm_fpmode_set(void);

/* 1 when the calling thread flushes subnormals (or the machine has no such mode). */
int fm_fpmode_ok(void);

#endif
