/*
 * feedbench - fan-out latency of kyro-serve's /v1/subscribe, or of Redis
 * pub/sub, to N subscribers while one writer commits at a fixed rate.
 *
 *   feedbench sse PORT DIR SUBS RATE SECONDS OUT.csv
 *   feedbench redis PORT - SUBS RATE SECONDS OUT.csv
 *   feedbench redis-set PORT - SUBS RATE SECONDS OUT.csv
 *
 * sse: the writer opens DIR with libkyro (the directory kyro-serve on
 * PORT serves) and commits one single-record batch per tick with
 * KYRO_SYNC_NONE; redis: it PUBLISHes the sequence number on channel
 * "feed" of the redis-server on PORT; redis-set: it SETs the key named by
 * the sequence number, and the subscribers SUBSCRIBE to the keyevent
 * channel "__keyevent@0__:set" (the server runs with
 * notify-keyspace-events E$), whose messages are the key: a write a
 * durable Redis persists, where PUBLISH is never written to its
 * append-only file.  The time of a change is taken just
 * before its commit (or PUBLISH) begins, so the latency includes the
 * commit.  The subscribers are N TCP connections served by one epoll
 * thread in this process, so both clocks are one.  Each subscriber must
 * see every sequence number in order; the program fails otherwise.
 * OUT.csv gets one line per received change: subscriber,seq,latency_us.
 * A summary line goes to stdout.
 *
 * For replication (bench/feed/replica.sh) the subscribers are on a
 * replica: then DIR is the primary's directory (sse) or the environment's
 * FEEDBENCH_WRITE_PORT the Redis master's port (redis), and the latency is
 * from the primary's commit to the replica's delivery.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kyro.h"

struct conn {
	int fd;
	char buf[1 << 20];
	int st;           /* SSE: dechunk()'s state */
	uint32_t win;
	uint64_t left;
	size_t len;
	uint64_t expect;  /* next sequence number */
	uint64_t got;
	int ready;        /* subscribed */
	int elem, is_msg; /* Redis: the element of the array being read */
};

static int redis_mode, set_mode, port, write_port;
static const char *dir;
static unsigned nsubs;
static double rate, seconds;
static uint64_t *t_commit;   /* ns, by sequence number */
static uint64_t nchanges, first_seq;
static volatile int writer_done;
static struct conn *conns;
static float *lat_us;        /* [sub * nchanges + i] */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "feedbench: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int dial_port(int p)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a))
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static int dial(void) { return dial_port(port); }

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

static void got_seq(unsigned i, struct conn *c, uint64_t seq)
{
	uint64_t t = now_ns();
	if (seq != c->expect) {
		fprintf(stderr, "feedbench: subscriber %u: got %llu, expected %llu\n", i,
			(unsigned long long)seq, (unsigned long long)c->expect);
		exit(1);
	}
	c->expect++;
	uint64_t k = seq - first_seq;
	if (k < nchanges) {
		uint64_t tc = __atomic_load_n(&t_commit[k], __ATOMIC_ACQUIRE);
		lat_us[(size_t)i * nchanges + k] = tc ? (float)((double)((int64_t)(t - tc)) / 1e3) : -1e9f;
		c->got++;
	}
}

/* SSE: the "seq" of each change in "data:" lines; Redis: the third element of a "message" array. */
static void parse(unsigned i, struct conn *c)
{
	size_t at = 0;
	for (;;) {
		char *nl = memchr(c->buf + at, '\n', c->len - at);
		if (!nl)
			break;
		size_t ll = (size_t)(nl - (c->buf + at));
		char *l = c->buf + at;
		if (!redis_mode) {
			/* Every change's "seq", not the event's id: a
			 * replica's event may carry several of the
			 * primary's batches. */
			if (ll > 6 && !memcmp(l, "data: ", 6)) {
				*nl = 0;
				for (char *q = l; (q = strstr(q, "{\"seq\":")); q += 7)
					got_seq(i, c, strtoull(q + 7, NULL, 10));
			} else if (ll > 7 && !memcmp(l, ": from ", 7))
				c->ready = 1;
			at += ll + 1;
			continue;
		}
		/* Redis: messages are *3 $7 message $4 feed $N payload
		 * (redis-set: the channel is the keyevent one, the payload
		 * the key). */
		if (l[0] == '$') {
			long n = strtol(l + 1, NULL, 10);
			size_t need = ll + 1 + (size_t)n + 2;
			if (c->len - at < need)
				break;
			char *v = nl + 1;
			if (c->elem == 0)
				c->is_msg = n == 7 && !memcmp(v, "message", 7);
			if (c->elem == 2 && c->is_msg)
				got_seq(i, c, strtoull(v, NULL, 10));
			c->elem++;
			at += need;
			continue;
		}
		if (l[0] == '*')
			c->elem = 0;
		if (l[0] == ':')
			c->ready = 1;
		at += ll + 1;
	}
	memmove(c->buf, c->buf + at, c->len - at);
	c->len -= at;
}

/* SSE: the HTTP/1.1 body without its chunk framing, into C->buf (a data
 * line may straddle chunks).  States: 0 headers, 1 a chunk's size line,
 * 2 its bytes, 3 the CR LF after them. */
static void dechunk(struct conn *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)p[i];
		if (c->st == 2) {
			size_t k = n - i < c->left ? n - i : (size_t)c->left;
			memcpy(c->buf + c->len, p + i, k);
			c->len += k;
			c->left -= k;
			i += k;
			c->st = c->left ? 2 : 3;
			c->win = 0;
			continue;
		}
		i++;
		c->win = c->win << 8 | ch;
		if (c->st == 0 && c->win == 0x0d0a0d0au) {
			c->st = 1;
			c->left = 0;
		} else if (c->st == 1 && ch == '\n') {
			c->st = c->left ? 2 : 1;
		} else if (c->st == 1 && ch != '\r') {
			c->left = c->left * 16 +
				  (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
		} else if (c->st == 3 && ch == '\n') {
			c->st = 1;
			c->left = 0;
		}
	}
}

static void *writer(void *arg)
{
	(void)arg;
	kyro_db *db = NULL;
	int rfd = -1;
	char reply[256];
	if (!redis_mode) {
		if (kyro_open(&db, dir, KYRO_RDWR) || kyro_set_sync(db, KYRO_SYNC_NONE))
			die("kyro_open");
	} else {
		rfd = dial_port(write_port);
	}
	uint64_t t0 = now_ns(), period = (uint64_t)(1e9 / rate);
	for (uint64_t k = 0; k < nchanges; k++) {
		uint64_t due = t0 + k * period;
		/* Asleep until the tick, not spinning: on two CPUs a
		 * spinning writer took one from the server under test.  The
		 * latency starts at the commit, whenever the wake-up lands. */
		struct timespec ts = {(time_t)(due / 1000000000u),
				      (long)(due % 1000000000u)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
				       NULL) == EINTR)
			;
		__atomic_store_n(&t_commit[k], now_ns(), __ATOMIC_RELEASE);
		if (!redis_mode) {
			uint64_t seq;
			char v[24];
			int n = snprintf(v, sizeof v, "%llu", (unsigned long long)k);
			/* Outside a batch: a batch of one, committed. */
			if (kyro_put(db, k, v, (size_t)n, &seq)) {
				fprintf(stderr, "feedbench: commit: %s\n", kyro_errmsg(db));
				exit(2);
			}
			if (seq != first_seq + k) {
				fprintf(stderr, "feedbench: another writer: seq %llu\n",
					(unsigned long long)seq);
				exit(2);
			}
		} else {
			char cmd[128], num[24];
			int n = snprintf(num, sizeof num, "%llu", (unsigned long long)(first_seq + k));
			int m = set_mode
				? snprintf(cmd, sizeof cmd,
					   "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nx\r\n", n, num)
				: snprintf(cmd, sizeof cmd,
					   "*3\r\n$7\r\nPUBLISH\r\n$4\r\nfeed\r\n$%d\r\n%s\r\n", n, num);
			send_all(rfd, cmd, (size_t)m);
			/* The reply (":N\r\n" or "+OK\r\n") is read after every 64 to keep
			 * the pipe short without a round trip per message. */
			if (k % 64 == 63 || k + 1 == nchanges) {
				size_t lines = 0, want = k % 64 + 1;
				while (lines < want) {
					ssize_t r = read(rfd, reply, sizeof reply);
					if (r <= 0)
						die("read reply");
					for (ssize_t j = 0; j < r; j++)
						lines += reply[j] == '\n';
				}
			}
		}
	}
	writer_done = 1;
	kyro_close(db);
	if (rfd >= 0)
		close(rfd);
	return NULL;
}

static uint64_t last_seq_of(void)
{
	kyro_db *db;
	uint64_t s = 0;
	if (kyro_open(&db, dir, KYRO_RDWR) || kyro_last_seq(db, &s))
		die("kyro_open");
	kyro_close(db);
	return s;
}

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: feedbench sse|redis|redis-set PORT DIR SUBS RATE SECONDS "
			"OUT.csv\n");
		return 2;
	}
	set_mode = !strcmp(argv[1], "redis-set");
	redis_mode = set_mode || !strcmp(argv[1], "redis");
	port = atoi(argv[2]);
	const char *wp = getenv("FEEDBENCH_WRITE_PORT");
	write_port = wp && *wp ? atoi(wp) : port;
	dir = argv[3];
	nsubs = (unsigned)atoi(argv[4]);
	rate = atof(argv[5]);
	seconds = atof(argv[6]);
	nchanges = (uint64_t)(rate * seconds);
	first_seq = redis_mode ? 1 : last_seq_of() + 1;
	t_commit = calloc(nchanges, sizeof *t_commit);
	lat_us = calloc((size_t)nsubs * nchanges, sizeof *lat_us);
	conns = calloc(nsubs, sizeof *conns);
	if (!t_commit || !lat_us || !conns)
		die("calloc");
	int ep = epoll_create1(0);
	char req[256];
	for (unsigned i = 0; i < nsubs; i++) {
		struct conn *c = &conns[i];
		c->fd = dial();
		c->expect = first_seq;
		int n = set_mode
			? snprintf(req, sizeof req,
				   "*2\r\n$9\r\nSUBSCRIBE\r\n$18\r\n__keyevent@0__:set\r\n")
			: redis_mode
			? snprintf(req, sizeof req, "*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nfeed\r\n")
			: snprintf(req, sizeof req,
				   "GET /v1/subscribe?from=%llu HTTP/1.1\r\nHost: x\r\n\r\n",
				   (unsigned long long)first_seq);
		send_all(c->fd, req, (size_t)n);
		struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
	}
	pthread_t wt;
	int started = 0;
	uint64_t deadline = 0;
	struct epoll_event ev[64];
	for (;;) {
		unsigned ready = 0, done = 0;
		for (unsigned i = 0; i < nsubs; i++) {
			ready += conns[i].ready;
			done += conns[i].expect == first_seq + nchanges;
		}
		if (!started && ready == nsubs) {
			pthread_create(&wt, NULL, writer, NULL);
			started = 1;
		}
		if (done == nsubs)
			break;
		if (writer_done && !deadline)
			deadline = now_ns() + 10000000000ull;
		if (deadline && now_ns() > deadline) {
			fprintf(stderr, "feedbench: only %u of %u subscribers got everything\n",
				done, nsubs);
			return 1;
		}
		int n = epoll_wait(ep, ev, 64, 100);
		for (int k = 0; k < n; k++) {
			unsigned i = ev[k].data.u32;
			struct conn *c = &conns[i];
			static char raw[1 << 16];
			size_t room = sizeof c->buf - c->len;
			ssize_t r = read(c->fd, redis_mode ? c->buf + c->len : raw,
					 room < sizeof raw ? room : sizeof raw);
			if (r <= 0) {
				fprintf(stderr, "feedbench: subscriber %u: connection ended\n", i);
				return 1;
			}
			if (redis_mode)
				c->len += (size_t)r;
			else
				dechunk(c, raw, (size_t)r);
			parse(i, c);
		}
	}
	pthread_join(wt, NULL);
	FILE *out = fopen(argv[7], "w");
	if (!out)
		die(argv[7]);
	fprintf(out, "subscriber,seq,latency_us\n");
	size_t total = (size_t)nsubs * nchanges;
	for (unsigned i = 0; i < nsubs; i++)
		for (uint64_t k = 0; k < nchanges; k++)
			fprintf(out, "%u,%llu,%.1f\n", i, (unsigned long long)(first_seq + k),
				lat_us[(size_t)i * nchanges + k]);
	fclose(out);
	qsort(lat_us, total, sizeof *lat_us, cmpf);
	printf("%s subs=%u rate=%.0f changes=%llu delivered=%zu p50_us=%.0f p99_us=%.0f "
	       "p999_us=%.0f max_us=%.0f\n", redis_mode ? "redis" : "kyro", nsubs, rate,
	       (unsigned long long)nchanges, total, lat_us[total / 2],
	       lat_us[total * 99 / 100], lat_us[total * 999 / 1000], lat_us[total - 1]);
	return 0;
}
