/*
 * vec_store.c - vectors in the store: kyro_vec_*().
 */
#include <errno.h>

#include "internal.h"
#include "kyro.h"

int kyro_vec_put(kyro_db *db, uint64_t key, const float *vec, uint32_t dim,
		 uint64_t *seq)
{
	(void)db, (void)key, (void)vec, (void)dim, (void)seq;
	return ENOSYS;
}

int kyro_vec_get(kyro_db *db, uint64_t key, const float **vec, uint32_t *dim)
{
	(void)db, (void)key, (void)vec, (void)dim;
	return ENOSYS;
}

int kyro_vec_dim(kyro_db *db, uint32_t *dim)
{
	(void)db, (void)dim;
	return ENOSYS;
}

int kyro_vec_search(kyro_db *db, const struct kyro_vec_query *q,
		    struct kyro_vec_hit *hits, size_t *n)
{
	(void)db, (void)q, (void)hits, (void)n;
	return ENOSYS;
}

int kyro_vec_build(kyro_db *db, const struct kyro_vec_params *p,
		   struct kyro_vec_stats *st, kyro_progress_fn progress,
		   void *arg)
{
	(void)db, (void)p, (void)st, (void)progress, (void)arg;
	return ENOSYS;
}

int kyro_set_vec_params(kyro_db *db, const struct kyro_vec_params *p)
{
	(void)db, (void)p;
	return ENOSYS;
}

int kyro_vec_info(kyro_db *db, struct kyro_vec_info *info)
{
	(void)db, (void)info;
	return ENOSYS;
}
