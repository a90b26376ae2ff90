/*
 * acceptor.c - the listening socket and the thread that accepts on it.
 *
 * libmicrohttpd's own thread pool (0.9.75) lets every worker poll the one
 * listening socket, and the first to wake accepts up to ten connections
 * in a row.  So a burst of connections, a client opening its pool, lands
 * mostly on one worker: with wrk's 8 connections and 2 workers, one
 * worker took all 8 in most runs, and the daemon served on one core of
 * two while the other idled.  Under keep-alive a connection lives long,
 * so where it lands decides the load for its whole life.  Here one thread
 * accepts every connection and gives it to the worker with the fewest
 * open (on a tie, the first after the last choice, so that equal workers
 * take turns).
 *
 * A worker's count goes up when its connection is handed over and down
 * when libmicrohttpd reports the connection closed, or refuses it.  The
 * total is the --max-connections limit: at the limit the thread stops
 * accepting, and clients wait in the backlog, until a connection closes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acceptor.h"
#include "log.h"

static int lfd = -1, wake = -1;
static struct MHD_Daemon *const *workers;
static unsigned nworkers, limit;
static unsigned ids[ACCEPTOR_MAX_WORKERS];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned conns[ACCEPTOR_MAX_WORKERS], total, next;
static int full, stopping;

static pthread_t thread;
static int running;

int acceptor_open(const struct serve_cfg *c, char *err, size_t errlen)
{
	const int on = 1;
	const int fam = c->addr.ss_family;
	const socklen_t len = fam == AF_INET6 ? sizeof(struct sockaddr_in6)
					      : sizeof(struct sockaddr_in);
	/* As libmicrohttpd set its own: the address reusable at once after a
	 * restart, and an IPv6 address for IPv6 alone. */
	lfd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) ||
	    (fam == AF_INET6 &&
	     setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on)) ||
	    bind(lfd, (const struct sockaddr *)&c->addr, len) ||
	    listen(lfd, SOMAXCONN)) {
		snprintf(err, errlen, "cannot listen on %s: %s", c->listen,
			 strerror(errno));
		if (lfd >= 0)
			close(lfd);
		lfd = -1;
		return -1;
	}
	return 0;
}

void *acceptor_worker_cls(unsigned i)
{
	ids[i] = i;
	return &ids[i];
}

unsigned acceptor_workers(void)
{
	return nworkers;
}

unsigned acceptor_connections(unsigned i)
{
	pthread_mutex_lock(&mu);
	unsigned n = i < nworkers ? conns[i] : 0;
	pthread_mutex_unlock(&mu);
	return n;
}

static void poke(void)
{
	const uint64_t one = 1;
	if (wake >= 0 && write(wake, &one, sizeof one) < 0 && errno != EAGAIN)
		log_msg(LOG_WARN, "cannot wake the accepting thread: %s",
			strerror(errno));
}

/* Connection of worker I gone (or never taken). */
static void drop(unsigned i)
{
	pthread_mutex_lock(&mu);
	if (conns[i]) {
		conns[i]--;
		total--;
	}
	const int was_full = full;
	full = 0;
	pthread_mutex_unlock(&mu);
	if (was_full)
		poke();
}

void acceptor_notify(void *cls, struct MHD_Connection *conn,
		     void **socket_context,
		     enum MHD_ConnectionNotificationCode code)
{
	(void)conn;
	(void)socket_context;
	if (code == MHD_CONNECTION_NOTIFY_CLOSED)
		drop(*(const unsigned *)cls);
}

/* The worker for one more connection, counted.  Under the lock. */
static unsigned pick(void)
{
	unsigned best = next % nworkers;
	for (unsigned j = 1; j < nworkers; j++) {
		const unsigned i = (next + j) % nworkers;
		if (conns[i] < conns[best])
			best = i;
	}
	next = best + 1;
	conns[best]++;
	total++;
	return best;
}

static void accept_one(void)
{
	struct sockaddr_storage sa;
	socklen_t sl = sizeof sa;
	const int fd = accept4(lfd, (struct sockaddr *)&sa, &sl,
			       SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ECONNABORTED || errno == EINTR)
			return;
		/* Out of descriptors or memory: the connection stays in the
		 * backlog; try again a little later rather than spin. */
		log_msg(LOG_WARN, "cannot accept a connection: %s",
			strerror(errno));
		const struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
		return;
	}
	/* Counted before it is handed over: the worker may close it before
	 * MHD_add_connection() returns. */
	pthread_mutex_lock(&mu);
	const unsigned i = pick();
	pthread_mutex_unlock(&mu);
	if (MHD_add_connection(workers[i], fd, (struct sockaddr *)&sa, sl) !=
	    MHD_YES) {
		/* libmicrohttpd has closed the socket. */
		log_msg(LOG_DEBUG, "a worker refused a connection: %s",
			strerror(errno));
		drop(i);
	}
}

static void *run(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&mu);
		const int stop = stopping;
		full = total >= limit;
		const int wait_only = full;
		pthread_mutex_unlock(&mu);
		if (stop)
			break;
		/* At the limit, only a closed connection (or the stop) wakes
		 * this thread: the listening socket stays readable. */
		struct pollfd p[2] = {{wake, POLLIN, 0}, {lfd, POLLIN, 0}};
		if (poll(p, wait_only ? 1 : 2, -1) < 0) {
			if (errno != EINTR)
				log_msg(LOG_WARN, "poll: %s", strerror(errno));
			continue;
		}
		if (p[0].revents) {
			uint64_t v;
			(void)!read(wake, &v, sizeof v);
		}
		if (!wait_only && p[1].revents)
			accept_one();
	}
	return NULL;
}

int acceptor_start(struct MHD_Daemon *const *w, unsigned n,
		   unsigned max_conns, char *err, size_t errlen)
{
	workers = w;
	nworkers = n;
	limit = max_conns;
	wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	int rc = pthread_create(&thread, NULL, run, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot start the accepting thread: %s",
			 strerror(rc));
		return -1;
	}
	running = 1;
	return 0;
}

void acceptor_quiesce(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&mu);
	stopping = 1;
	pthread_mutex_unlock(&mu);
	poke();
	pthread_join(thread, NULL);
	running = 0;
}

void acceptor_close(void)
{
	acceptor_quiesce();
	if (lfd >= 0)
		close(lfd);
	if (wake >= 0)
		close(wake);
	lfd = wake = -1;
}
