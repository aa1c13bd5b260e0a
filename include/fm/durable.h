/* Durable files: fsync of a file, and of the directory that holds a path (so that a rename in
 * it survives a crash). Plain POSIX; the checkpoint and samples writers use them. */
#ifndef FM_DURABLE_H
#define FM_DURABLE_H

/* 0, or -1 with errno set. */
int fm_durable_fsync(const char *path);
int fm_durable_fsync_dir_of(const char *path);

#endif
