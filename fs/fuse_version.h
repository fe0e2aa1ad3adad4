/* The libfuse version, for 'kekfs --version', without cli/ naming a FUSE header. */
#ifndef KEKFS_FUSE_VERSION_H
#define KEKFS_FUSE_VERSION_H

/* The version of the libfuse loaded now (fuse_pkgversion), e.g. "3.14.0". */
const char *fs_fuse_version(void);

#endif
