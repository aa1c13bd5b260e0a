/* What build wrote a file: the release, the git commit, the HDF5 format version. */
#ifndef FM_VERSION_H
#define FM_VERSION_H

/* The layout of fm's HDF5 files; readers accept 1 .. this. */
#define FM_FORMAT_VERSION 1

/* The release (CMake's project version), e.g. "0.1.0". */
const char *fm_version_release(void);
/* `git describe --always --dirty` of the source tree at build time, or "unknown". */
const char *fm_version_git(void);

#endif
