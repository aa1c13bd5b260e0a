/* Files, plain POSIX: durable writes (fsync of a file and of the directory that holds a path, so
 * that a rename in it survives a crash), opening inputs that cannot block (a FIFO given as a
 * config or checkpoint would wait forever in open), telling "absent" from "unreadable", and the
 * lock an output directory is held by for a run's life. */
#ifndef FM_FILE_H
#define FM_FILE_H

#include <stdio.h>

/* 0, or -1 with errno set. */
int fm_file_fsync(const char *path);
int fm_file_fsync_dir_of(const char *path);

/* path opened for reading when it is a regular file; NULL after err says why ("cannot read
 * WHAT PATH: ..." or "WHAT PATH is a FIFO: allowed: a regular file"). */
FILE *fm_file_open_regular(const char *path, const char *what, char *err, int cap);

/* 0 when path is a regular file, -1 after err says why (as fm_file_open_regular). */
int fm_file_check_regular(const char *path, const char *what, char *err, int cap);

/* 1: path exists; 0: it does not (ENOENT); -1: cannot tell (an I/O error, a symlink loop, a
 * path component that is not a directory...) after err says so. Only 0 may mean "start fresh". */
int fm_file_exists(const char *path, char *err, int cap);

/* Bytes of physical memory of this node (0: cannot tell): what memory checks compare with. */
double fm_file_node_memory(void);

/* Takes an exclusive lock on the directory dir for as long as the process lives (or until
 * fm_file_unlock): flock on the directory; where the file system has no flock on directories
 * (NFS), an fcntl lock on dir/.fmtrain.lock holding the pid. An fd >= 0, or -1 after err says
 * that another run holds it (or why it could not be taken). */
int fm_file_lock(const char *dir, const char *what, char *err, int cap);
void fm_file_unlock(int fd);

#endif
