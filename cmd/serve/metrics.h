/*
 * metrics.h - counters for GET /metrics (Prometheus text format 0.0.4).
 *
 * Request counters are kept per worker thread (no shared cache line on
 * the hot path) and summed when scraped; everything else is read from
 * the modules that own it (store, commit, jobs) and from /proc.
 */
#ifndef KYRO_SERVE_METRICS_H
#define KYRO_SERVE_METRICS_H

#include <stdint.h>

#include "json.h"

enum route_id {
	R_PUT, R_DELETE, R_LOOKUP, R_GET_FAST, R_LOOKUP_FAST, R_KV_GET,
	R_KV_PUT, R_KV_DELETE, R_LOOKUP_BATCH, R_RANGE, R_OFFSET, R_SNAPSHOT,
	R_RMI_BUILD, R_WARMUP, R_HEALTH, R_BUILD_INFO, R_METRICS, R_REPLAY,
	R_SUBSCRIBE, R_IMAGE, R_REPLICATE, R_OTHER,
	R_COUNT
};

/* The route's label, e.g. "/v1/get_fast/{key}". */
const char *metrics_route_label(int route);

/* Count one answered request; call from the worker that answered it. */
void metrics_request(int route, unsigned status, uint64_t ns);

/* Append every metric; EXTRA_* are the HTTP layer's gauges. */
void metrics_render(struct sbuf *b, unsigned connections, unsigned inflight);

#endif
