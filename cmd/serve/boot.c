/*
 * boot.c - a replica's bootstrap, its parts that touch files: the
 * primary's image imported into a directory of its own, the fsync of a
 * parent directory after a rename, and removing a directory tree (see
 * boot.h).  replica.c moves the imported store into place.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kyro.h"

#include "boot.h"
#include "fetch.h"
#include "history.h"
#include "log.h"
#include "serve.h"

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb, (void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
		log_msg(LOG_WARN, "cannot remove '%s': %s", path,
			strerror(errno));
	return 0;
}

void boot_rm_tree(const char *dir)
{
	if (access(dir, F_OK) == 0)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int boot_sync_parent(const char *dir)
{
	char parent[PATH_MAX];
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	if (!slash)
		snprintf(parent, sizeof parent, ".");
	else if (slash == parent)
		parent[1] = 0;
	else
		*slash = 0;
	return serve_sync_dir(parent);
}

struct boot {
	struct fetch x;
	kyro_import *im;
	int failed;
	uint64_t bytes;
};

static size_t boot_write(char *p, size_t size, size_t n, void *arg)
{
	struct boot *b = arg;
	size_t len = size * n;
	if (fetch_status(&b->x) != 200) {
		fetch_keep(&b->x, p, len);
		return len;
	}
	if (kyro_import_write(b->im, p, len)) {
		b->failed = 1;
		return 0;
	}
	b->bytes += len;
	return len;
}

int boot_fetch_image(const char *boot_dir, const char *primary,
		     uint64_t *seq, char *id, uint64_t *bytes, char *err,
		     size_t errlen)
{
	struct boot b = {0};
	int rc = -1;
	boot_rm_tree(boot_dir);
	if (kyro_import_open(&b.im, boot_dir))
		snprintf(err, errlen, "%s", kyro_import_errmsg(b.im));
	else if (fetch_init(&b.x, "/v1/image", NULL, boot_write, &b))
		snprintf(err, errlen, "cannot start libcurl");
	else if (!fetch_run(&b.x, err, errlen) || b.failed) {
		if (b.failed || kyro_import_finish(b.im, seq))
			snprintf(err, errlen, "%s", kyro_import_errmsg(b.im));
		else if (!history_valid(b.x.history))
			snprintf(err, errlen, "%s/v1/image named no history "
				 "(X-Kyro-History): the primary is older "
				 "than this replica; upgrade it",
				 primary);
		else if (!history_write_follows(boot_dir, b.x.history, err,
						errlen)) {
			memcpy(id, b.x.history, HISTORY_ID_LEN + 1);
			rc = 0;
		}
	}
	if (b.x.c)
		fetch_free(&b.x);
	kyro_import_close(b.im);
	if (rc)
		boot_rm_tree(boot_dir);
	*bytes = b.bytes;
	return rc;
}

