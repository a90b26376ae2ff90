/*
 * kyro-serve - the HTTP/JSON v1 daemon.  Options and start-up order here;
 * the work is in cmd/serve/ (http, routes, commit, jobs, metrics...).
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "serve/auth.h"
#include "serve/commit.h"
#include "serve/feed.h"
#include "serve/history.h"
#include "serve/http.h"
#include "serve/jobs.h"
#include "serve/log.h"
#include "serve/notify.h"
#include "serve/ratelimit.h"
#include "serve/replica.h"
#include "serve/routes.h"
#include "serve/store.h"
#include "serve/vector.h"

enum { OPT_DIR = 1, OPT_LISTEN, OPT_THREADS, OPT_SYNC, OPT_TOKEN_FILE, OPT_MAX_CONNS, OPT_TIMEOUT,
       OPT_RETAIN, OPT_HEARTBEAT, OPT_MAX_SUBS, OPT_REPLICA_OF, OPT_REPLICA_TOKEN_FILE };

static const struct cli_opt opts[] = {
	{OPT_DIR, 'd', "dir", "DIR", "the data directory (default $KYRODB_DIR, else ./kyrodb-data)"},
	{OPT_LISTEN, 'l', "listen", "ADDR:PORT", "where to listen (default 127.0.0.1:3030)"},
	{OPT_THREADS, 0, "threads", "N", "worker threads (default: one per CPU)"},
	{OPT_SYNC, 0, "sync", "MODE", "always (default), batch or none"},
	{OPT_TOKEN_FILE, 0, "auth-token-file", "FILE", "require the bearer token in FILE"},
	{OPT_MAX_CONNS, 0, "max-connections", "N", "concurrent connections (default 1024)"},
	{OPT_TIMEOUT, 0, "timeout", "SECONDS", "close idle connections after this (default 30)"},
	{OPT_RETAIN, 0, "retain", "SPEC", CLI_RETAIN_HELP},
	{OPT_HEARTBEAT, 0, "heartbeat", "SECONDS", "/v1/subscribe: a comment after this long idle (default 15)"},
	{OPT_MAX_SUBS, 0, "max-subscribers", "N", "concurrent /v1/subscribe streams (default 256)"},
	{OPT_REPLICA_OF, 0, "replica-of", "URL", "be a read replica of the kyro-serve at URL"},
	{OPT_REPLICA_TOKEN_FILE, 0, "replica-token-file", "FILE", "the primary's bearer token, in FILE"},
	{0, 0, NULL, NULL, NULL},
};

static const char *const usage[] = {
	"[-d DIR] [-l ADDR:PORT] [--threads=N] [--sync=MODE] [--auth-token-file=FILE] "
	"[--max-connections=N] [--timeout=SECONDS] [--retain=SPEC] [--heartbeat=SECONDS] "
	"[--max-subscribers=N] [--replica-of=URL [--replica-token-file=FILE]]",
	NULL,
};

static const char epilog[] =
	"Environment: KYRODB_AUTH_TOKEN, KYRODB_MAX_VALUE_BYTES, KYRODB_SYNC_INTERVAL_MS,\n"
	"KYRODB_AUTO_SNAPSHOT_RECORDS, KYRODB_RATE_LIMIT_RPS, KYRODB_RATE_LIMIT_BURST,\n"
	"KYRODB_WARM_ON_START, KYRODB_DISABLE_HTTP_LOG, KYRODB_LOG_LEVEL,\n"
	"KYRODB_MAX_VECTOR_BATCH_BYTES, KYRODB_VECTOR_RECALL_EVERY,\n"
	"KYRODB_REPLICA_TOKEN; see kyro-serve(8).\n";

static struct cli c = {.prog = SERVE_PROG, .usage = usage, .opts = opts, .epilog = epilog,
		       .summary = "Serve a KyroDB store over HTTP (the JSON v1 API)."};

static uint64_t number(const char *what, const char *s, uint64_t lo, uint64_t hi)
{
	uint64_t v;
	if (!s || cli_parse_key(s, strlen(s), &v) || v < lo || v > hi)
		cli_usage_error(&c, "invalid %s '%s' (%llu to %llu)", what, s ? s : "",
				(unsigned long long)lo, (unsigned long long)hi);
	return v;
}

static uint64_t env_number(const char *name, uint64_t def, uint64_t lo, uint64_t hi)
{
	const char *s = getenv(name);
	return s && *s ? number(name, s, lo, hi) : def;
}

static int env_flag(const char *name)
{
	const char *s = getenv(name);
	return s && *s && strcmp(s, "0");
}

static void parse_listen(struct serve_cfg *cfg, const char *s)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t n = colon ? (size_t)(colon - s) : 0;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (!colon || !n || n >= sizeof host || !colon[1])
		cli_usage_error(&c, "invalid --listen '%s' (ADDR:PORT, e.g. 127.0.0.1:3030)", s);
	memcpy(host, s, n);
	host[n] = 0;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc)
		cli_usage_error(&c, "invalid --listen '%s': %s", s, gai_strerror(rc));
	memcpy(&cfg->addr, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
}

/* An http:// or https:// URL, kept without its trailing slashes. */
static const char *replica_url(const char *s)
{
	if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
		cli_usage_error(&c, "invalid --replica-of '%s' (http://HOST:PORT)", s);
	char *u = strdup(s);
	if (!u)
		cli_usage_error(&c, "out of memory");
	size_t n = strlen(u);
	while (n > 8 && u[n - 1] == '/')
		u[--n] = 0;
	return u;
}

static void options(struct serve_cfg *cfg, int argc, char **argv, const char **token_file,
		    const char **replica_token_file)
{
	const char *dir = NULL, *listen = "127.0.0.1:3030";
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int opt;
	*cfg = (struct serve_cfg){.threads = cpus > 0 && cpus < 64 ? (unsigned)cpus : 2,
				  .max_conns = 1024, .timeout_s = 30, .sync = KYRO_SYNC_ALWAYS,
				  .heartbeat_s = 15, .max_subscribers = 256};
	/* A token in argv is visible to every user through ps(1). */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strncmp(argv[i], "--auth-token", 12) && (!argv[i][12] || argv[i][12] == '='))
			cli_usage_error(&c, "a token on the command line would show in ps; "
				       "use --auth-token-file FILE or KYRODB_AUTH_TOKEN");
	cli_init(&c, argc, argv);
	while ((opt = cli_next(&c)) != 0) {
		switch (opt) {
		case OPT_DIR: dir = c.arg; break;
		case OPT_LISTEN: listen = c.arg; break;
		case OPT_THREADS: cfg->threads = (unsigned)number("--threads", c.arg, 1, 256); break;
		case OPT_SYNC:
			if (cli_parse_sync(c.arg, &cfg->sync))
				cli_usage_error(&c, "invalid --sync mode '%s' (always, batch or none)", c.arg);
			break;
		case OPT_TOKEN_FILE: *token_file = c.arg; break;
		case OPT_MAX_CONNS: cfg->max_conns = (unsigned)number("--max-connections", c.arg, 1, 1000000); break;
		case OPT_TIMEOUT: cfg->timeout_s = (unsigned)number("--timeout", c.arg, 1, 86400); break;
		case OPT_RETAIN:
			if (cli_parse_retain(c.arg, &cfg->retain_bytes, &cfg->retain_seconds))
				cli_usage_error(&c, CLI_RETAIN_ERROR, c.arg);
			cfg->retain_set = 1;
			break;
		case OPT_HEARTBEAT: cfg->heartbeat_s = (unsigned)number("--heartbeat", c.arg, 1, 3600); break;
		case OPT_MAX_SUBS:
			cfg->max_subscribers = (unsigned)number("--max-subscribers", c.arg, 0, 100000);
			break;
		case OPT_REPLICA_OF: cfg->replica_of = replica_url(c.arg); break;
		case OPT_REPLICA_TOKEN_FILE: *replica_token_file = c.arg; break;
		}
	}
	if (c.ind != argc)
		cli_usage_error(&c, "unexpected operand '%s'", argv[c.ind]);
	if (*replica_token_file && !cfg->replica_of)
		cli_usage_error(&c, "--replica-token-file needs --replica-of");
	cfg->dir = cli_dir(dir);
	snprintf(cfg->listen, sizeof cfg->listen, "%s", listen);
	parse_listen(cfg, listen);
	cfg->max_value = env_number("KYRODB_MAX_VALUE_BYTES", KYRO_MAX_VALUE, 0, KYRO_MAX_VALUE);
	cfg->max_inflight = (size_t)env_number("KYRODB_MAX_INFLIGHT_BYTES", (uint64_t)256 << 20,
					       1 << 20, UINT64_MAX >> 1);
	cfg->sync_interval_ms = (unsigned)env_number("KYRODB_SYNC_INTERVAL_MS", 10, 1, 60000);
	cfg->auto_snapshot = env_number("KYRODB_AUTO_SNAPSHOT_RECORDS", 1000000, 0, UINT64_MAX);
	cfg->rl_rps = (double)env_number("KYRODB_RATE_LIMIT_RPS", 0, 0, 10000000);
	cfg->rl_burst = (unsigned)env_number("KYRODB_RATE_LIMIT_BURST", 0, 0, 10000000);
	cfg->max_batch_keys = (unsigned)env_number("KYRODB_MAX_BATCH_KEYS", 10000, 1, 1000000);
	cfg->max_range = (unsigned)env_number("KYRODB_MAX_RANGE", 100000, 1, 10000000);
	cfg->max_vec_batch = (size_t)env_number("KYRODB_MAX_VECTOR_BATCH_BYTES", (uint64_t)64 << 20,
						 1 << 20, (uint64_t)1 << 30);
	cfg->recall_every = (unsigned)env_number("KYRODB_VECTOR_RECALL_EVERY", 1000, 0, 1000000000);
	cfg->shutdown_ms = (unsigned)env_number("KYRODB_SHUTDOWN_TIMEOUT_MS", 5000, 0, 3600000);
	cfg->warm_on_start = env_flag("KYRODB_WARM_ON_START");
	cfg->http_log = !env_flag("KYRODB_DISABLE_HTTP_LOG");
	const char *lvl = getenv("KYRODB_LOG_LEVEL");
	if (lvl && *lvl) {
		int l = log_parse_level(lvl);
		if (l < 0)
			cli_usage_error(&c, "invalid KYRODB_LOG_LEVEL '%s' (error, warn, info or debug)", lvl);
		log_set_level(l);
	}
}

/* The daemon's WARN for cli_env_warnings(): its log, not bare stderr. */
static void log_env_warning(void *arg, const char *text)
{
	(void)arg;
	log_msg(LOG_WARN, "%s", text);
}

/* Stop: no new connections, requests in flight finish (bounded), jobs
 * are left to finish or abandoned (they are crash-safe), the WAL is
 * synced.  Returns the exit status. */
static int shut_down(const struct serve_cfg *cfg)
{
	uint64_t t0 = serve_now_ns();
	notify_send("STOPPING=1");
	log_msg(LOG_INFO, "stopping");
	/* Streams never end by themselves: end them first, and leave no
	 * subscriber's connection suspended. */
	feed_stop();
	replica_stop();
	http_quiesce(cfg->shutdown_ms);
	uint64_t spent = (serve_now_ns() - t0) / 1000000;
	unsigned left = spent < cfg->shutdown_ms ? cfg->shutdown_ms - (unsigned)spent : 0;
	int running = jobs_stop(left);
	/* Writes still suspended finish with their group: wait for them, as
	 * stopping the daemon with a suspended connection is not allowed. */
	if (http_drain_suspended(left + 10000)) {
		log_msg(LOG_ERROR, "writes still pending after the grace period; exiting without them");
		_exit(EXIT_ERR);
	}
	http_stop();
	int rc = commit_stop();
	if (running) {
		/* A job's library call cannot be interrupted; a snapshot or
		 * index build killed midway leaves nothing half-committed. */
		log_msg(LOG_WARN, "abandoning %d running job(s)", running);
		_exit(rc ? EXIT_ERR : EXIT_OK);
	}
	vector_stop();
	store_close_all();
	log_msg(LOG_INFO, "stopped");
	return rc ? EXIT_ERR : EXIT_OK;
}

int main(int argc, char **argv)
{
	struct serve_cfg cfg;
	const char *token_file = NULL, *replica_token_file = NULL;
	char err[512];
	options(&cfg, argc, argv, &token_file, &replica_token_file);
	cli_env_warnings(log_env_warning, NULL);
	if (auth_init(token_file, getenv("KYRODB_AUTH_TOKEN"), err, sizeof err)) {
		cli_warn(c.prog, "%s", err);
		return EXIT_ERR;
	}
	rl_init(cfg.rl_rps, cfg.rl_burst);
	store_init(cfg.dir);
	routes_init(&cfg);
	jobs_init(&cfg);
	vector_init(&cfg);

	/* Every thread inherits this mask; the main thread takes the
	 * signals with sigwait(). */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (feed_start(&cfg, err, sizeof err) || http_start(&cfg, err, sizeof err)) {
		cli_warn(c.prog, "%s", err);
		return EXIT_ERR;
	}
	/* A replica's follower is its one writer (replica.c). */
	int rc = cfg.replica_of ? replica_start(&cfg, replica_token_file,
						getenv("KYRODB_REPLICA_TOKEN"), err, sizeof err)
				: commit_start(&cfg, err, sizeof err);
	/* Nothing is served before http_set_ready(): a primary names its
	 * history (serve/history.h) before any replica can ask. */
	if (!rc && !cfg.replica_of && history_init_primary(cfg.dir, err, sizeof err)) {
		commit_stop();
		rc = -1;
	}
	if (rc) {
		cli_warn(c.prog, "cannot open '%s': %s", cfg.dir, err);
		feed_stop();
		http_stop();
		return EXIT_ERR;
	}
	if (cfg.warm_on_start) {
		if (jobs_warm_now(err, sizeof err))
			log_msg(LOG_WARN, "warmup failed: %s", err);
		else
			log_msg(LOG_INFO, "warmed the snapshot and index");
	}
	http_set_ready();
	if (notify_send("READY=1"))
		log_msg(LOG_WARN, "cannot notify $NOTIFY_SOCKET: %s", strerror(errno));
	log_msg(LOG_INFO, "serving '%s' on %s (%u threads, --sync=%s%s%s%s%s)", cfg.dir, cfg.listen,
		cfg.threads, cfg.sync == KYRO_SYNC_ALWAYS ? "always" : cfg.sync == KYRO_SYNC_BATCH ? "batch" : "none",
		auth_enabled() ? ", token required" : "", rl_enabled() ? ", rate limited" : "",
		cfg.replica_of ? ", read replica of " : "", cfg.replica_of ? cfg.replica_of : "");
	for (;;) {
		int sig = 0;
		sigwait(&set, &sig);
		if (sig != SIGHUP)
			break;
		if (auth_reload(err, sizeof err))
			log_msg(LOG_ERROR, "SIGHUP: keeping the old token: %s", err);
		else
			log_msg(LOG_INFO, "SIGHUP: token re-read");
	}
	return shut_down(&cfg);
}
