/* image.h - what the image stream (image.c) carries of a manifest. */
#ifndef KYRO_IMAGE_H
#define KYRO_IMAGE_H

#include <stddef.h>

#include "manifest.h"

#define IMAGE_VERSION 1
#define IMAGE_MAX_FILES 8
#define IMAGE_NAME 64

/* The files manifest M names for its snapshot and that snapshot's
 * indexes, into NAMES (at most IMAGE_MAX_FILES), *N of them: what an
 * image carries.  A manifest field that names a new file adds it here. */
int kyro__image_names(const struct manifest *m, char names[][IMAGE_NAME],
		      size_t *n);

#endif
