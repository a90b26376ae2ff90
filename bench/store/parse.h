/*
 * parse.h - the LMDB peer reads keys and values, and prints values,
 * exactly as the kyro tools do: it is compiled against cmd/cli.c itself,
 * so the comparison measures the stores, not two parsers.
 */
#ifndef BENCH_PARSE_H
#define BENCH_PARSE_H

#include "cli.h"

#define buf cli_buf
#define parse_key cli_parse_key
#define unescape cli_unescape
#define put_escaped cli_put_escaped

#endif
