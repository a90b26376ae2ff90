/*
 * ratelimit.c - per-address token buckets in a fixed table.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "ratelimit.h"
#include "serve.h"

#define SLOTS 4096  /* a power of two */
#define PROBE 8
#define LOCKS 64

struct bucket {
	unsigned char addr[16];
	int used;
	double tokens;
	uint64_t last_ns;
};

static struct bucket table[SLOTS];
static pthread_mutex_t locks[LOCKS];
static double rate, burst;

void rl_init(double rps, unsigned b)
{
	rate = rps;
	burst = b ? b : (rps >= 1 ? rps : 1);
	for (int i = 0; i < LOCKS; i++)
		pthread_mutex_init(&locks[i], NULL);
}

int rl_enabled(void) { return rate > 0; }

static uint64_t hash(const unsigned char *k)
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 16; i++)
		h = (h ^ k[i]) * 1099511628211ULL;
	return h;
}

int rl_take(const struct sockaddr *sa, unsigned *retry_after)
{
	if (rate <= 0 || !sa)
		return 1;
	unsigned char k[16] = {0};
	if (sa->sa_family == AF_INET)
		memcpy(k, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(k, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	uint64_t h = hash(k), now = serve_now_ns();
	/* A probe run never crosses a lock stripe: runs start at multiples
	 * of PROBE and stripes are unions of runs. */
	size_t base = (size_t)(h & (SLOTS - 1)) & ~(size_t)(PROBE - 1);
	pthread_mutex_t *m = &locks[(base / PROBE) % LOCKS];
	pthread_mutex_lock(m);
	struct bucket *b = NULL, *oldest = &table[base];
	for (size_t i = base; i < base + PROBE; i++) {
		struct bucket *t = &table[i];
		if (t->used && !memcmp(t->addr, k, 16)) {
			b = t;
			break;
		}
		if (!t->used || (oldest->used && t->last_ns < oldest->last_ns))
			oldest = t;
	}
	if (!b) {
		b = oldest;
		memcpy(b->addr, k, 16);
		b->used = 1;
		b->tokens = burst;
		b->last_ns = now;
	}
	b->tokens += (double)(now - b->last_ns) / 1e9 * rate;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_ns = now;
	int ok = b->tokens >= 1;
	if (ok)
		b->tokens -= 1;
	else {
		double wait = (1 - b->tokens) / rate;
		*retry_after = (unsigned)wait;
		if ((double)*retry_after < wait)
			(*retry_after)++;
	}
	pthread_mutex_unlock(m);
	if (!ok && *retry_after < 1)
		*retry_after = 1;
	return ok;
}
