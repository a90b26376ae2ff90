/*
 * routes.h - the API: which handler answers which method and path.
 */
#ifndef KYRO_SERVE_ROUTES_H
#define KYRO_SERVE_ROUTES_H

#include "http.h"

struct route_match {
	int route;          /* enum route_id */
	route_fn fn;
	const char *rest;   /* path after the prefix, for /v1/kv/{key} etc. */
	size_t body_limit;  /* largest body accepted */
	int public;         /* no token needed, no rate limit (/health) */
	char allow[48];     /* for 405: the methods the path takes */
};

void routes_init(const struct serve_cfg *cfg);

/* Route METHOD PATH.  Returns 0, 404 (no such path) or 405 (M->allow
 * set); M->route is set in every case. */
int routes_match(const char *method, const char *path, struct route_match *m);

#endif
