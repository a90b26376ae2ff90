/*
 * boot.h - the parts of a replica's bootstrap that touch files
 * (replica.c has the bootstrap's order and its recovery rules).
 */
#ifndef KYRO_SERVE_BOOT_H
#define KYRO_SERVE_BOOT_H

#include <stddef.h>
#include <stdint.h>

/* Remove DIR and everything under it, if it exists; what cannot be
 * removed is logged. */
void boot_rm_tree(const char *dir);

/* fsync DIR's parent, so that a rename of DIR survives a crash: 0 or an
 * errno. */
int boot_sync_parent(const char *dir);

/* Import PRIMARY's image (GET /v1/image) into BOOT_DIR, made anew, with
 * FOLLOWS naming its history (also into ID, HISTORY_ID_LEN + 1 bytes);
 * *SEQ gets the image's sequence number, *BYTES what was received.  0,
 * or -1 with ERR set and BOOT_DIR removed. */
int boot_fetch_image(const char *boot_dir, const char *primary,
		     uint64_t *seq, char *id, uint64_t *bytes, char *err,
		     size_t errlen);

#endif
