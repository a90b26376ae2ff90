/*
 * vector.h - the vector routes: insert, batch insert, search (and the
 * seed's names for them) and the build job's parameters.
 */
#ifndef KYRO_SERVE_VECTOR_H
#define KYRO_SERVE_VECTOR_H

#include "http.h"

/* Body limits: a vector's text at about 32 bytes a component. */
#define VEC_TEXT_MAX ((size_t)KYRO_MAX_DIM * 32)

void vector_init(const struct serve_cfg *cfg);

/* POST /v1/vector/insert, /v1/insert (doc_id, embedding). */
void vector_insert(struct req *r);
void vector_insert_seed(struct req *r);
/* POST /v1/vector/insert_batch {"items":[...]}: one batch, all or
 * nothing. */
void vector_insert_batch(struct req *r);
/* POST /v1/vector/search, /v1/search (query_embedding). */
void vector_search(struct req *r);
void vector_search_seed(struct req *r);

/* The query parameters of POST /v1/vector/build into P; answers 400
 * itself and returns -1 when one is invalid. */
int vector_build_params(struct req *r, struct job_params *p);

/* Stop the recall spot-check thread (vecstats.h). */
void vector_stop(void);

#endif
