/* model-int.h - folder-private declarations of model/ (not installed, not for callers). */
#ifndef FV_MODEL_INT_H
#define FV_MODEL_INT_H

#include "fv_preproc.h"

/* Rebuilds a fitted preproc from saved statistics (used by the model decoder):
 * mean[] and std[] have fv_schema_n_columns(s) entries; only numeric columns are read;
 * every used std must be finite and > 0 and every used mean finite, else FV_ECORRUPT. */
int fv__preproc_from_stats(const fv_schema_t *s, const double *mean, const double *std,
                           fv_preproc_t **ret);

#endif
