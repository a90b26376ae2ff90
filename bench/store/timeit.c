/*
 * timeit.c - run one command and record its cost.
 *
 *   timeit FILE CMD [ARG ...]
 *
 * Runs CMD (stdin, stdout and stderr inherited, so the shell's
 * redirections apply to CMD alone) and appends one line to FILE:
 * `WALL USER SYS STATUS`, the wall time from CLOCK_MONOTONIC around
 * fork and wait, and the child's user and system CPU time (wait4), in
 * seconds.  Exits with CMD's status (2 if it could not run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double tv(struct timeval t) { return (double)t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: timeit FILE CMD [ARG ...]\n");
		return 2;
	}
	struct timespec a, b;
	struct rusage ru;
	int st;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pid_t pid = fork();
	if (pid < 0) {
		perror("timeit: fork");
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("timeit: wait4");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	FILE *f = fopen(argv[1], "a");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	fprintf(f, "%.6f %.6f %.6f %d\n",
		(double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9,
		tv(ru.ru_utime), tv(ru.ru_stime), code);
	if (fclose(f))
		return 2;
	return code;
}
