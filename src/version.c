#include "fm/version.h"

#ifndef FM_VERSION_STRING
#define FM_VERSION_STRING "unknown"
#endif
#ifndef FM_GIT_DESCRIBE
#define FM_GIT_DESCRIBE "unknown"
#endif

const char *fm_version_release(void) { return FM_VERSION_STRING; }
const char *fm_version_git(void) { return FM_GIT_DESCRIBE; }
