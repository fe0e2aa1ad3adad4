/* libfuse stays inside fs/: the command line asks here which libfuse it runs with. */
#include "fs_priv.h"
#include "fuse_version.h"

const char *fs_fuse_version(void)
{
	return fuse_pkgversion();
}
