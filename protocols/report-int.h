/* report-int.h - what report.c (the page) and report_svg.c (its charts) share. Private to
 * protocols/.
 */
#ifndef FV_REPORT_INT_H
#define FV_REPORT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* A growing text buffer. A failed append (no memory, past FV_REPORT_MAX_BYTES) sets err and
 * makes every later append a no-op, so the writers check once at the end. */
typedef struct fv__rsb {
    char *p;
    size_t len, cap;
    int err; /* 0, FV_ENOMEM or FV_ETOOBIG */
} fv__rsb_t;

void fv__rsb_add(fv__rsb_t *b, const char *s);
void fv__rsb_addn(fv__rsb_t *b, const char *s, size_t n);
void fv__rsb_printf(fv__rsb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s HTML-escaped (& < > " '), C0 controls but tab and newline as U+FFFD; NULL as "". */
void fv__rsb_esc(fv__rsb_t *b, const char *s);
/* A number for a data-* attribute or a table: %.17g, "null" when not finite. */
void fv__rsb_num(fv__rsb_t *b, double v);

/* One round curve: the rounds x[n] and values y[n] (NaN: a gap). */
typedef struct fv__rseries {
    const char *key;   /* data-series: the metric's key in rounds.jsonl */
    const char *label; /* the legend's text */
    const double *x, *y;
    size_t n;
} fv__rseries_t;

/* A line chart of round curves (skipped, returning false, when no value is finite). */
bool fv__report_round_chart(fv__rsb_t *b, const char *title, const char *y_label,
                            const fv__rseries_t *s, size_t n_series);
/* A curve of points in [0,1]^2 (ROC: diagonal drawn; PR: the positive rate drawn as
 * the baseline when base >= 0). pts: n pairs (x, y). */
void fv__report_curve_chart(fv__rsb_t *b, const char *title, const char *key, const char *x_label,
                            const char *y_label, const double *pts, size_t n, bool diagonal,
                            double base);
/* Horizontal bars, names[i] and values[i] already sorted (largest first). */
void fv__report_bar_chart(fv__rsb_t *b, const char *title, const char *const *names,
                          const double *values, size_t n);

#endif
