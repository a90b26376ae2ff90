/*
 * report.c - the sweep's report: a row of counts per file (tests/damage/
 * README.md says what each column means), then the first few trials of
 * each kind of failure with their details.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "sweep.h"

/* Detail lines printed per category and file. */
#define FIRST_FEW 5

enum {
	C_TRIED, C_DETECTED, C_UNDETECTED, C_EXEMPT, C_GET_RIGHT, C_GET_REFUSED,
	C_WRONG, C_NN_RIGHT, C_NN_REFUSED, C_NN_WRONG, C_CRASH, C_PUT_OK,
	C_PUT_REFUSED, C_LOST, C_ODD, C_PUT_OK_READ_REFUSED, C_GET_MSG,
	C_NN_MSG, C_FAILED, NCOUNT
};

static const char *const head[NCOUNT] = {
	"tried", "detect", "undet", "exempt", "get-ok", "get-2", "wrong",
	"nn-ok", "nn-2", "nn-wr", "crash", "put-ok", "put-2", "lost", "odd",
};

static void count(uint64_t *c, const struct result *r)
{
	c[C_TRIED]++;
	c[C_DETECTED] += r->verify == V_DETECTED;
	c[C_UNDETECTED] += r->verify == V_UNDETECTED;
	c[C_EXEMPT] += r->verify == V_EXEMPT;
	c[C_GET_RIGHT] += r->get == G_RIGHT;
	c[C_GET_REFUSED] += r->get == G_REFUSED;
	c[C_WRONG] += r->get == G_WRONG;
	const int nn_bad = r->nearest == G_WRONG || r->exact == G_WRONG;
	c[C_NN_RIGHT] += r->nearest == G_RIGHT && r->exact == G_RIGHT;
	c[C_NN_WRONG] += nn_bad;
	c[C_NN_REFUSED] += !nn_bad && (r->nearest == G_REFUSED ||
				       r->exact == G_REFUSED);
	c[C_CRASH] += r->verify == V_CRASH || r->get == G_CRASH ||
		      r->nearest == G_CRASH || r->exact == G_CRASH ||
		      r->put == P_CRASH || r->after == A_CRASH;
	c[C_PUT_OK] += r->put == P_OK;
	c[C_PUT_REFUSED] += r->put == P_REFUSED;
	c[C_LOST] += r->after == A_LOST;
	c[C_ODD] += r->get == G_ODD || r->nearest == G_ODD ||
		    r->exact == G_ODD || r->put == P_ODD || r->after == A_ODD;
	c[C_PUT_OK_READ_REFUSED] += r->after == A_REFUSED;
	c[C_GET_MSG] += r->get_msg;
	c[C_NN_MSG] += r->near_msg;
	c[C_FAILED] += failed(r);
}

static void print_row(const char *name, const uint64_t *c)
{
	printf("%-26s", name);
	for (int j = 0; j <= C_ODD; j++)
		printf(" %*" PRIu64, j == C_TRIED ? 6 : 6, c[j]);
	printf("\n");
}

/* The first few trials of file F (or all files, F < 0) that failed in
 * category WHICH, with their details. */
static void print_details(const char *title, int which)
{
	for (size_t f = 0; f < nfiles; f++) {
		size_t shown = 0, total = 0;
		for (size_t i = 0; i < ntrials; i++) {
			const struct result *r = &sh->res[i];
			const struct trial *t = &trials[i];
			if (t->file != f)
				continue;
			const char *d = NULL;
			switch (which) {
			case C_UNDETECTED:
				d = r->verify == V_UNDETECTED ? r->vdetail : NULL;
				break;
			case C_WRONG:
				d = r->get == G_WRONG ? r->gdetail : NULL;
				break;
			case C_NN_WRONG:
				d = r->nearest == G_WRONG ? r->ndetail :
				    r->exact == G_WRONG ? r->xdetail : NULL;
				break;
			case C_CRASH:
				d = r->verify == V_CRASH ? r->vdetail :
				    r->get == G_CRASH ? r->gdetail :
				    r->nearest == G_CRASH ? r->ndetail :
				    r->exact == G_CRASH ? r->xdetail :
				    r->put == P_CRASH ? r->pdetail :
				    r->after == A_CRASH ? r->adetail : NULL;
				break;
			case C_LOST:
				d = r->after == A_LOST ? r->adetail : NULL;
				break;
			case C_PUT_OK_READ_REFUSED:
				d = r->after == A_REFUSED ? r->adetail : NULL;
				break;
			case C_ODD:
				d = r->get == G_ODD ? r->gdetail :
				    r->nearest == G_ODD ? r->ndetail :
				    r->exact == G_ODD ? r->xdetail :
				    r->put == P_ODD ? r->pdetail :
				    r->after == A_ODD ? r->adetail : NULL;
				break;
			}
			if (!d)
				continue;
			if (!total++)
				printf("%s: %s:\n", title, files[f].name);
			if (shown++ < FIRST_FEW)
				printf("  offset %" PRIu64 " xor 0x%02x: %s\n", t->off,
				       t->mask, d);
		}
		if (total > FIRST_FEW)
			printf("  ... and %zu more\n", total - FIRST_FEW);
	}
}

uint64_t report(int only_file)
{
	uint64_t total[NCOUNT] = { 0 };
	printf("%-26s", "file");
	for (int j = 0; j <= C_ODD; j++)
		printf(" %6s", head[j]);
	printf("\n");
	for (size_t f = 0; f < nfiles; f++) {
		uint64_t cnt[NCOUNT] = { 0 };
		for (size_t i = 0; i < ntrials; i++)
			if (trials[i].file == f)
				count(cnt, &sh->res[i]);
		for (int j = 0; j < NCOUNT; j++)
			total[j] += cnt[j];
		if (cnt[C_TRIED] || !only_file)
			print_row(files[f].name, cnt);
	}
	print_row("total", total);
	printf("kyro-put exit 0, then kyro-get exit 2: %" PRIu64
	       "; kyro-get right with a message on stderr: %" PRIu64
	       "; kyro-get --nearest right with one: %" PRIu64 "\n",
	       total[C_PUT_OK_READ_REFUSED], total[C_GET_MSG], total[C_NN_MSG]);
	print_details("undetected by kyro-verify", C_UNDETECTED);
	print_details("silent wrong reads", C_WRONG);
	print_details("wrong nearest neighbours", C_NN_WRONG);
	print_details("crashes", C_CRASH);
	print_details("acknowledged batches lost", C_LOST);
	print_details("odd exits", C_ODD);
	/* Allowed (the damage may still be there), but where the writer
	 * acknowledged a batch into a store it then cannot read, a look is
	 * worth it. */
	print_details("acknowledged by kyro-put, then kyro-get exit 2 (allowed)",
		      C_PUT_OK_READ_REFUSED);
	return total[C_FAILED];
}
