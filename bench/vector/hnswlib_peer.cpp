// hnswlib_peer.cpp - hnswlib's side of bench/vector (the peer, built from
// Debian's libhnswlib-dev headers with g++ -O3 -march=native), single
// thread.  Same command lines and output as vecbench:
//
//   hnswlib_peer build BASE M EFC OUT.bin   build_s= peak_rss_kb= file_bytes=
//   hnswlib_peer search OUT.bin BASE QUERIES GT K EF...
//       load_ms= first_answer_ms= (loadIndex, then one search at ef 64;
//       with HNSWLIB_COLD set, after dropping OUT.bin from the page cache),
//       a warm-up pass at the largest EF, then per EF: ef= recall= qps=
#include <hnswlib/hnswlib.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static double now()
{
	using namespace std::chrono;
	return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// CPU time of this thread, printed beside the wall clock's.
static double cpu_now()
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static std::vector<float> load(const char *path, int &d, size_t &n)
{
	FILE *f = fopen(path, "rb");
	if (!f || fread(&d, 4, 1, f) != 1) {
		fprintf(stderr, "hnswlib_peer: cannot read %s\n", path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	n = (size_t)ftell(f) / (4 + 4 * (size_t)d);
	fseek(f, 0, SEEK_SET);
	std::vector<float> v(n * d);
	for (size_t i = 0; i < n; i++) {
		int dd;
		if (fread(&dd, 4, 1, f) != 1 ||
		    fread(&v[i * d], 4, d, f) != (size_t)d)
			exit(2);
	}
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && !strcmp(argv[1], "build")) {
		int d;
		size_t n;
		std::vector<float> v = load(argv[2], d, n);
		hnswlib::L2Space space(d);
		const double t0 = now(), c0 = cpu_now();
		hnswlib::HierarchicalNSW<float> idx(&space, n, atoi(argv[3]),
						    atoi(argv[4]), 42);
		for (size_t i = 0; i < n; i++)
			idx.addPoint(&v[i * d], i);
		const double t1 = now(), c1 = cpu_now();
		idx.saveIndex(argv[5]);
		struct rusage ru;
		struct stat st;
		getrusage(RUSAGE_SELF, &ru);
		stat(argv[5], &st);
		printf("build_s=%.3f build_cpu_s=%.3f write_s=%.3f "
		       "peak_rss_kb=%ld file_bytes=%lld\n",
		       t1 - t0, c1 - c0, now() - t1, ru.ru_maxrss,
		       (long long)st.st_size);
		return 0;
	}
	if (argc >= 8 && !strcmp(argv[1], "search")) {
		int d, gd;
		size_t nq, ngt;
		std::vector<float> q = load(argv[4], d, nq);
		std::vector<float> gtf = load(argv[5], gd, ngt);
		const int32_t *gt = (const int32_t *)gtf.data();
		const size_t k = atoi(argv[6]);
		hnswlib::L2Space space(d);
		if (getenv("HNSWLIB_COLD")) {
			// Only this file's pages leave the page cache.
			int fd = open(argv[2], O_RDONLY);
			if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
				exit(2);
			close(fd);
		}
		const double t0 = now();
		auto *idx = new hnswlib::HierarchicalNSW<float>(&space, argv[2]);
		const double t1 = now();
		idx->setEf(64);
		idx->searchKnn(&q[0], k);
		const double t2 = now();
		printf("load_ms=%.3f first_answer_ms=%.3f\n", (t1 - t0) * 1e3,
		       (t2 - t0) * 1e3);
		idx->setEf(atoi(argv[argc - 1]));
		for (size_t i = 0; i < nq; i++)
			idx->searchKnn(&q[i * d], k);
		for (int e = 7; e < argc; e++) {
			const size_t ef = atoi(argv[e]);
			idx->setEf(ef);
			double rsum = 0;
			const double s0 = now(), c0 = cpu_now();
			for (size_t i = 0; i < nq; i++) {
				auto r = idx->searchKnn(&q[i * d], k);
				size_t hit = 0;
				while (!r.empty()) {
					for (size_t j = 0; j < k; j++)
						hit += r.top().second ==
						       (size_t)gt[i * gd + j];
					r.pop();
				}
				rsum += (double)hit / k;
			}
			const double t = now() - s0, c = cpu_now() - c0;
			printf("ef=%zu recall=%.4f qps=%.1f qps_cpu=%.1f\n", ef,
			       rsum / nq, nq / t, nq / c);
		}
		delete idx;
		return 0;
	}
	fprintf(stderr, "usage: hnswlib_peer build|search ...\n");
	return 2;
}
