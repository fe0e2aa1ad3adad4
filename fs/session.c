/* The daemon's FUSE session: libfuse's options, mount, signal handlers and loop. */
#include "session.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "fs_priv.h"

struct session {
	struct fuse_session *se;
	int handlers; /* fuse_set_signal_handlers took */
	int mounted;
};

/* Escapes commas and backslashes for a FUSE -o value. */
static void fuse_opt_escape(char *out, size_t size, const char *in)
{
	size_t n = 0;

	for (; *in && n + 2 < size; in++) {
		if (*in == ',' || *in == '\\')
			out[n++] = '\\';
		out[n++] = *in;
	}
	out[n] = '\0';
}

/* libfuse's argv for kekfs's options: the source shown as the backing directory. */
static struct fuse_session *session_new(const struct session_opts *o, struct kekfs_fs *fs)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	char fsname[PATH_MAX * 2], opt[PATH_MAX * 2 + 32];
	struct fuse_session *se;

	fuse_opt_escape(fsname, sizeof(fsname), o->backing);
	snprintf(opt, sizeof(opt), "-osubtype=kekfs,fsname=%s", fsname);
	if (fuse_opt_add_arg(&args, "kekfs") != 0 || fuse_opt_add_arg(&args, opt) != 0 ||
	    (o->allow_other && fuse_opt_add_arg(&args, "-oallow_other") != 0) ||
	    (o->default_permissions && fuse_opt_add_arg(&args, "-odefault_permissions") != 0) ||
	    (o->read_only && fuse_opt_add_arg(&args, "-oro") != 0) ||
	    (o->kernel_opts && o->kernel_opts[0] &&
	     (fuse_opt_add_arg(&args, "-o") != 0 ||
	      fuse_opt_add_arg(&args, o->kernel_opts + 1) != 0))) {
		fuse_opt_free_args(&args);
		return NULL;
	}
	se = fuse_session_new(&args, kekfs_fs_ops(), sizeof(*kekfs_fs_ops()), fs);
	fuse_opt_free_args(&args);
	return se;
}

int session_mount(const struct session_opts *o, struct kekfs_fs *fs, const char *mountpoint,
		  struct session **out)
{
	struct session *s = calloc(1, sizeof(*s));

	*out = s;
	if (!s || !(s->se = session_new(o, fs)))
		return SESSION_ERR_START;
	if (fuse_set_signal_handlers(s->se) != 0)
		return SESSION_ERR_START;
	s->handlers = 1;
	if (fuse_session_mount(s->se, mountpoint) != 0)
		return SESSION_ERR_MOUNT;
	s->mounted = 1;
	if (kekfs_fs_attach_io(fs, s->se) != 0)
		return SESSION_ERR_ATTACH;
	kekfs_fs_set_session(fs, s->se);
	return SESSION_OK;
}

int session_serve(struct session *s)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return -1;
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_max_threads(cfg, 16);
	rc = fuse_session_loop_mt(s->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	/* libfuse reports the signal that ended the loop: SIGTERM and friends are a clean stop. */
	return (rc == SIGTERM || rc == SIGINT || rc == SIGHUP) ? 0 : rc;
}

void session_end(struct session *s)
{
	if (!s)
		return;
	if (s->handlers)
		fuse_remove_signal_handlers(s->se);
	if (s->mounted)
		fuse_session_unmount(s->se);
	if (s->se)
		fuse_session_destroy(s->se);
	free(s);
}
