#include "fm/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fm/config.h"
#include "fm/error.h"

int fm_file_fsync(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int fm_file_fsync_dir_of(const char *path)
{
    char buf[FM_PATH_MAX + 64];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return fm_file_fsync(dirname(buf));
}

/* 0 when the stat that stat_failed reports succeeded on a regular file; else -1 after err says
 * what path is instead ("cannot open WHAT PATH: ...", "WHAT PATH is a FIFO: ..."). */
static int judge(int stat_failed, const struct stat *st, const char *path, const char *what, char *err, int cap)
{
    const mode_t m = st->st_mode;
    if (stat_failed) fm_errorf(err, cap, "cannot open %s %s: %s", what, path, strerror(errno));
    else if (!S_ISREG(m))
        fm_errorf(err, cap, "%s %s is %s: allowed: a regular file", what, path,
                  S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" :
                  S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file");
    else return 0;
    return -1;
}

FILE *fm_file_open_regular(const char *path, const char *what, char *err, int cap)
{
    /* O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st = {0};
    if (judge(fd < 0 || fstat(fd, &st), &st, path, what, err, cap) == 0) {
        FILE *f = fcntl(fd, F_SETFL, 0) == 0 ? fdopen(fd, "rb") : NULL;
        if (f) return f;
        fm_errorf(err, cap, "cannot open %s %s: %s", what, path, strerror(errno));
    }
    if (fd >= 0) close(fd);
    return NULL;
}

int fm_file_check_regular(const char *path, const char *what, char *err, int cap)
{
    struct stat st = {0}; /* stat never waits on a FIFO */
    return judge(stat(path, &st) != 0, &st, path, what, err, cap);
}

int fm_file_exists(const char *path, char *err, int cap)
{
    struct stat st;
    if (stat(path, &st) == 0) return 1;
    if (errno == ENOENT) return 0;
    fm_errorf(err, cap, "cannot tell whether %s exists: %s (fix the path or the file system; nothing was started)",
              path, strerror(errno));
    return -1;
}

double fm_file_node_memory(void)
{
    const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size : 0.0;
}

/* The fallback where a directory cannot be flock'ed (NFS): DIR/.fmtrain.lock, with the pid. */
static int lock_file(const char *dir, const char *what, char *err, int cap)
{
    char path[FM_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/.fmtrain.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fm_errorf(err, cap, "cannot create the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) == 0) {
        char pid[32];
        const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) == n) return fd;
        fm_errorf(err, cap, "cannot write the lock file %s: %s", path, strerror(errno));
    } else if (errno == EACCES || errno == EAGAIN) {
        char pid[32] = "";
        const ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        fm_errorf(err, cap, "%s %s is in use by another fmtrain (pid %s holds %s): wait for it to end, or choose "
                  "another -o", what, dir, *pid ? pid : "unknown", path);
    } else {
        fm_errorf(err, cap, "cannot lock %s: %s", path, strerror(errno));
    }
    close(fd);
    return -1;
}

int fm_file_lock(const char *dir, const char *what, char *err, int cap)
{
    /* flock on the directory itself: nothing is created in it (a refused run leaves it as it
     * was), and the lock ends with the process however it ends. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fm_errorf(err, cap, "cannot open %s %s: %s", what, dir, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    const int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) {
        fm_errorf(err, cap, "%s %s is in use by another fmtrain run: wait for it to end, or choose another -o", what, dir);
        return -1;
    }
    return lock_file(dir, what, err, cap);
}

void fm_file_unlock(int fd)
{
    if (fd >= 0) close(fd);
}
