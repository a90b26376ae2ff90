/*
 * vecstats.h - the vector figures of /metrics, and the recall spot-check
 * thread.
 */
#ifndef KYRO_SERVE_VECSTATS_H
#define KYRO_SERVE_VECSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "kyro.h"
#include "serve.h"

/* Start the recall spot-check thread (unless KYRODB_VECTOR_RECALL_EVERY
 * is 0); stop it and close its handle. */
void vecstats_start(const struct serve_cfg *cfg);
void vecstats_stop(void);

/* Count a search Q answered with H (N hits), through the graph with beam
 * EF or exactly; a graph search may be handed to the recall check. */
void vecstats_search(const struct kyro_vec_query *q,
		     const struct kyro_vec_hit *h, size_t n, int exact,
		     uint32_t ef);
void vecstats_inserted(size_t n);
void vecstats_fast_parsed(void);

/* Append the vector metrics (from a worker thread: its handle supplies
 * the gauges). */
void vector_metrics(struct sbuf *b);

#endif
