/*
 * ratelimit.h - a token bucket per client IP address.
 *
 * Off unless KYRODB_RATE_LIMIT_RPS is set: each address may then make RPS
 * requests a second on average and BURST at once.  The table has a fixed
 * number of slots, so a flood of addresses costs no memory: it evicts the
 * least recently seen bucket of a probe run (whose owner starts afresh).
 */
#ifndef KYRO_SERVE_RATELIMIT_H
#define KYRO_SERVE_RATELIMIT_H

#include <sys/socket.h>

void rl_init(double rps, unsigned burst);
int rl_enabled(void);

/* Take one token for ADDR.  Returns 1 when allowed; 0 when not, with
 * *RETRY_AFTER the whole seconds until a token is there. */
int rl_take(const struct sockaddr *addr, unsigned *retry_after);

#endif
