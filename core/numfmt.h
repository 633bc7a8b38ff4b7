/* numfmt: numbers as people and programs read them back: thousands
 * separators for counts, the shortest text that reads back as the same double
 * for stored reals. Tested through tests/cli.sh and tests/test_report.c. */
#ifndef UNETLAB_NUMFMT_H
#define UNETLAB_NUMFMT_H
#include <stddef.h>
#include <stdint.h>

/* 1234567 -> "1,234,567" into buf; returns buf. */
const char *num_commas(int64_t v, char *buf, size_t size);
/* The shortest of %.15g and %.17g that reads back as v; "" for NaN. Returns buf. */
const char *num_shortest(double v, char *buf, size_t size);

/* A duration of s seconds for a progress line: "42s", "3m07s", "2h05m"; "?" when not finite. Returns buf. */
const char *num_duration(double s, char *buf, size_t size);

#endif
