/* report_svg.c - the report's charts as inline SVG (fv_report.h): round curves, ROC and
 * precision-recall curves, and horizontal bars.
 *
 * Every chart states its own mapping on its <svg>: the data window (data-x0, x1, y0, y1)
 * and the plot area's pixels (data-px0 left, px1 right, py0 bottom, py1 top), so a reader
 * (the browser test) can map each drawn point back to a value; each series carries its
 * values too (data-values, data-points, data-value). A pixel is
 *     px = px0 + (x - x0) / (x1 - x0) * (px1 - px0),  py = py0 - (y - y0) / (y1 - y0) * (py0 - py1)
 * printed with 3 decimals. The data window is the values' range widened to round tick
 * steps (1, 2 or 5 times a power of ten), so a flat curve or a single round still gets a
 * window of non-zero size.
 *
 * Pure; no state; threads: any.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fv_report.h"
#include "report-int.h"

static const char *const palette[] = {"#1f5fa8", "#d1495b", "#2a9d3f",
                                      "#8e5bb5", "#e08a00", "#4b4b4b"};
#define N_COLORS (sizeof palette / sizeof palette[0])

typedef struct frame {
    double x0, x1, y0, y1;     /* data window */
    double px0, px1, py0, py1; /* plot area: left, right, bottom, top */
} frame_t;

static double fx(const frame_t *f, double x)
{
    return f->px0 + (x - f->x0) / (f->x1 - f->x0) * (f->px1 - f->px0);
}
static double fy(const frame_t *f, double y)
{
    return f->py0 - (y - f->y0) / (f->y1 - f->y0) * (f->py0 - f->py1);
}

/* A round step for about `want` ticks over span (> 0). */
static double nice_step(double span, int want)
{
    double raw = span / want;
    double p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static int step_decimals(double step)
{
    int d = (int)-floor(log10(step) + 1e-9);
    return d < 0 ? 0 : d > 8 ? 8 : d;
}

/* Widens [lo, hi] to multiples of a round step. */
static void nice_range(double lo, double hi, int want, double *ret_lo, double *ret_hi,
                       double *ret_step)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 1e-12 ? fabs(lo) * 0.05 : 0.05;
        lo -= pad;
        hi += pad;
    }
    double st = nice_step(hi - lo, want);
    *ret_lo = floor(lo / st + 1e-9) * st;
    *ret_hi = ceil(hi / st - 1e-9) * st;
    if (!(*ret_hi > *ret_lo))
        *ret_hi = *ret_lo + st;
    *ret_step = st;
}

static void svg_open(fv__rsb_t *b, const char *cls, double w, double h, const frame_t *f,
                     const char *title)
{
    fv__rsb_printf(b,
                   "<svg class=\"%s\" width=\"%.0f\" "
                   "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" data-x0=\"",
                   cls, w, h, w, h);
    fv__rsb_num(b, f->x0);
    fv__rsb_add(b, "\" data-x1=\"");
    fv__rsb_num(b, f->x1);
    fv__rsb_add(b, "\" data-y0=\"");
    fv__rsb_num(b, f->y0);
    fv__rsb_add(b, "\" data-y1=\"");
    fv__rsb_num(b, f->y1);
    fv__rsb_printf(b,
                   "\" data-px0=\"%.3f\" data-px1=\"%.3f\" data-py0=\"%.3f\" data-py1=\"%.3f\">"
                   "<title>",
                   f->px0, f->px1, f->py0, f->py1);
    fv__rsb_esc(b, title);
    fv__rsb_add(b, "</title>");
    fv__rsb_printf(b, "<rect class=\"plot\" x=\"%.3f\" y=\"%.3f\" width=\"%.3f\" height=\"%.3f\"/>",
                   f->px0, f->py1, f->px1 - f->px0, f->py0 - f->py1);
}

/* Grid lines and tick labels of both axes, and the axis titles. */
static void axes(fv__rsb_t *b, const frame_t *f, double xstep, double ystep, const char *x_label,
                 const char *y_label)
{
    int xd = step_decimals(xstep), yd = step_decimals(ystep);
    fv__rsb_add(b, "<g class=\"axis\">");
    for (int i = 0;; i++) {
        double v = f->x0 + i * xstep;
        if (v > f->x1 + xstep * 1e-6 || i > 200)
            break;
        double x = fx(f, v);
        fv__rsb_printf(b,
                       "<line class=\"grid\" x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\"/>"
                       "<text x=\"%.3f\" y=\"%.3f\" text-anchor=\"middle\">%.*f</text>",
                       x, f->py0, x, f->py1, x, f->py0 + 16, xd, v);
    }
    for (int i = 0;; i++) {
        double v = f->y0 + i * ystep;
        if (v > f->y1 + ystep * 1e-6 || i > 200)
            break;
        double y = fy(f, v);
        fv__rsb_printf(b,
                       "<line class=\"grid\" x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\"/>"
                       "<text x=\"%.3f\" y=\"%.3f\" text-anchor=\"end\">%.*f</text>",
                       f->px0, y, f->px1, y, f->px0 - 6, y + 4, yd, v);
    }
    fv__rsb_printf(b, "<text class=\"label\" x=\"%.3f\" y=\"%.3f\" text-anchor=\"middle\">",
                   (f->px0 + f->px1) / 2, f->py0 + 34);
    fv__rsb_esc(b, x_label);
    fv__rsb_printf(b,
                   "</text><text class=\"label\" transform=\"translate(14 %.3f) rotate(-90)\" "
                   "text-anchor=\"middle\">",
                   (f->py0 + f->py1) / 2);
    fv__rsb_esc(b, y_label);
    fv__rsb_add(b, "</text></g>");
}

static void legend(fv__rsb_t *b, const char *const *labels, size_t n)
{
    fv__rsb_add(b, "<ul class=\"legend\">");
    for (size_t i = 0; i < n; i++) {
        fv__rsb_printf(b, "<li><span class=\"swatch\" style=\"background:%s\"></span>",
                       palette[i % N_COLORS]);
        fv__rsb_esc(b, labels[i]);
        fv__rsb_add(b, "</li>");
    }
    fv__rsb_add(b, "</ul>");
}

static void figure_open(fv__rsb_t *b, const char *title)
{
    fv__rsb_add(b, "<figure><figcaption>");
    fv__rsb_esc(b, title);
    fv__rsb_add(b, "</figcaption>");
}

bool fv__report_round_chart(fv__rsb_t *b, const char *title, const char *y_label,
                            const fv__rseries_t *s, size_t n_series)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t k = 0; k < n_series; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i]) || !isfinite(s[k].x[i]))
                continue;
            xlo = fmin(xlo, s[k].x[i]);
            xhi = fmax(xhi, s[k].x[i]);
            ylo = fmin(ylo, s[k].y[i]);
            yhi = fmax(yhi, s[k].y[i]);
        }
    if (!isfinite(ylo))
        return false;
    frame_t f = {.px0 = 64, .px1 = 500, .py0 = 236, .py1 = 16};
    double xstep, ystep;
    if (xhi - xlo < 1) {
        f.x0 = xlo - 1;
        f.x1 = xhi + 1;
        xstep = 1;
    } else {
        xstep = nice_step(xhi - xlo, 8);
        if (xstep < 1)
            xstep = 1;
        f.x0 = floor(xlo / xstep) * xstep;
        f.x1 = ceil(xhi / xstep) * xstep;
        if (f.x0 == xlo && f.x0 > 0 && xhi - xlo > 3)
            f.x0 -= xstep; /* the first round off the axis */
    }
    nice_range(ylo, yhi, 5, &f.y0, &f.y1, &ystep);
    figure_open(b, title);
    svg_open(b, "chart rounds", 516, 284, &f, title);
    axes(b, &f, xstep, ystep, "round", y_label);
    const char *labels[16];
    size_t n_lab = 0;
    for (size_t k = 0; k < n_series; k++) {
        const char *color = palette[k % N_COLORS];
        if (n_lab < 16)
            labels[n_lab++] = s[k].label;
        fv__rsb_add(b, "<g class=\"series\" data-series=\"");
        fv__rsb_esc(b, s[k].key);
        fv__rsb_add(b, "\" data-x=\"[");
        for (size_t i = 0; i < s[k].n; i++) {
            if (i > 0)
                fv__rsb_add(b, ",");
            fv__rsb_num(b, s[k].x[i]);
        }
        fv__rsb_add(b, "]\" data-values=\"[");
        for (size_t i = 0; i < s[k].n; i++) {
            if (i > 0)
                fv__rsb_add(b, ",");
            fv__rsb_num(b, s[k].y[i]);
        }
        fv__rsb_printf(b, "]\" stroke=\"%s\" fill=\"%s\">", color, color);
        /* one polyline per run of defined values */
        for (size_t i = 0; i < s[k].n;) {
            while (i < s[k].n && !isfinite(s[k].y[i]))
                i++;
            size_t j = i;
            while (j < s[k].n && isfinite(s[k].y[j]))
                j++;
            if (j - i >= 2) {
                fv__rsb_add(b, "<polyline fill=\"none\" points=\"");
                for (size_t t = i; t < j; t++)
                    fv__rsb_printf(b, "%s%.3f,%.3f", t > i ? " " : "", fx(&f, s[k].x[t]),
                                   fy(&f, s[k].y[t]));
                fv__rsb_add(b, "\"/>");
            }
            i = j;
        }
        for (size_t i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i]))
                fv__rsb_printf(b, "<circle cx=\"%.3f\" cy=\"%.3f\" r=\"2.5\"/>", fx(&f, s[k].x[i]),
                               fy(&f, s[k].y[i]));
        fv__rsb_add(b, "</g>");
    }
    fv__rsb_add(b, "</svg>");
    legend(b, labels, n_lab);
    fv__rsb_add(b, "</figure>");
    return true;
}

void fv__report_curve_chart(fv__rsb_t *b, const char *title, const char *key, const char *x_label,
                            const char *y_label, const double *pts, size_t n, bool diagonal,
                            double base)
{
    frame_t f = {.x0 = 0, .x1 = 1, .y0 = 0, .y1 = 1, .px0 = 56, .px1 = 336, .py0 = 296, .py1 = 16};
    figure_open(b, title);
    svg_open(b, "chart curve", 352, 344, &f, title);
    axes(b, &f, 0.2, 0.2, x_label, y_label);
    if (diagonal)
        fv__rsb_printf(b, "<line class=\"ref\" x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\"/>",
                       fx(&f, 0), fy(&f, 0), fx(&f, 1), fy(&f, 1));
    if (base >= 0 && base <= 1)
        fv__rsb_printf(b, "<line class=\"ref\" x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\"/>",
                       fx(&f, 0), fy(&f, base), fx(&f, 1), fy(&f, base));
    fv__rsb_add(b, "<g class=\"series\" data-series=\"");
    fv__rsb_esc(b, key);
    fv__rsb_add(b, "\" data-points=\"[");
    for (size_t i = 0; i < n; i++) {
        fv__rsb_add(b, i > 0 ? ",[" : "[");
        fv__rsb_num(b, pts[2 * i]);
        fv__rsb_add(b, ",");
        fv__rsb_num(b, pts[2 * i + 1]);
        fv__rsb_add(b, "]");
    }
    fv__rsb_printf(b, "]\" stroke=\"%s\" fill=\"none\">", palette[0]);
    if (n >= 2) {
        fv__rsb_add(b, "<polyline points=\"");
        for (size_t i = 0; i < n; i++)
            fv__rsb_printf(b, "%s%.3f,%.3f", i > 0 ? " " : "", fx(&f, pts[2 * i]),
                           fy(&f, pts[2 * i + 1]));
        fv__rsb_add(b, "\"/>");
    } else if (n == 1) {
        fv__rsb_printf(b, "<circle cx=\"%.3f\" cy=\"%.3f\" r=\"2.5\" fill=\"%s\"/>", fx(&f, pts[0]),
                       fy(&f, pts[1]), palette[0]);
    }
    fv__rsb_add(b, "</g></svg></figure>");
}

/* At most max bytes of s, cut at a character boundary (s is UTF-8: jansson's). */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

void fv__report_bar_chart(fv__rsb_t *b, const char *title, const char *const *names,
                          const double *values, size_t n)
{
    double hi = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(values[i]) && values[i] > hi)
            hi = values[i];
    double x0, x1, step;
    nice_range(0, hi > 0 ? hi : 1, 5, &x0, &x1, &step);
    x0 = 0;
    const double row = 22, top = 8;
    double h = top + row * (double)n;
    frame_t f = {.x0 = x0, .x1 = x1, .y0 = 0, .y1 = (double)n, .px0 = 220, .px1 = 620};
    f.py1 = top;
    f.py0 = h;
    figure_open(b, title);
    svg_open(b, "chart bars", 640, h + 44, &f, title);
    fv__rsb_add(b, "<g class=\"axis\">");
    int xd = step_decimals(step);
    for (int i = 0; i <= 200; i++) {
        double v = x0 + i * step;
        if (v > x1 + step * 1e-6)
            break;
        fv__rsb_printf(b,
                       "<line class=\"grid\" x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\"/>"
                       "<text x=\"%.3f\" y=\"%.3f\" text-anchor=\"middle\">%.*f</text>",
                       fx(&f, v), f.py0, fx(&f, v), f.py1, fx(&f, v), f.py0 + 16, xd, v);
    }
    fv__rsb_printf(b,
                   "<text class=\"label\" x=\"%.3f\" y=\"%.3f\" text-anchor=\"middle\">mean "
                   "|contribution| (log-odds)</text></g>",
                   (f.px0 + f.px1) / 2, f.py0 + 34);
    for (size_t i = 0; i < n; i++) {
        double v = isfinite(values[i]) && values[i] > 0 ? values[i] : 0;
        double y = top + row * (double)i + 3;
        fv__rsb_printf(b, "<text class=\"name\" x=\"%.3f\" y=\"%.3f\" text-anchor=\"end\">",
                       f.px0 - 6, y + 12);
        size_t cut = utf8_cut(names[i], 30);
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.*s%s", (int)cut, names[i],
                 names[i][cut] ? "\xe2\x80\xa6" : "");
        fv__rsb_esc(b, tmp);
        fv__rsb_add(b, "</text><rect class=\"bar\" data-name=\"");
        fv__rsb_esc(b, names[i]);
        fv__rsb_add(b, "\" data-value=\"");
        fv__rsb_num(b, values[i]);
        fv__rsb_printf(b, "\" x=\"%.3f\" y=\"%.3f\" width=\"%.3f\" height=\"16\" fill=\"%s\">",
                       f.px0, y, fx(&f, v) - f.px0, palette[0]);
        fv__rsb_add(b, "<title>");
        fv__rsb_esc(b, names[i]);
        fv__rsb_printf(b, ": %.6g</title></rect>", values[i]);
    }
    fv__rsb_add(b, "</svg></figure>");
}
