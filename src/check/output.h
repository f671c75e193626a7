/* output.h: a report as readable text (text.c) or as JSON (json.c, doc/mtasts-check.schema.json).
 */
#ifndef MTASTS_CHECK_OUTPUT_H
#define MTASTS_CHECK_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

#include "check/report.h"

/* colour: ANSI escapes (only when stdout is a terminal and NO_COLOR is unset). */
void text_report(FILE *out, const struct report *r, bool colour);

/* Writes {"schema_version":1,"domains":[...]} for n reports. */
void json_reports(FILE *out, struct report *const *r, size_t n);

/* "TLSv1.3" for 0x0304 etc.; "" for 0. */
const char *text_tls_version(int v);

#endif
