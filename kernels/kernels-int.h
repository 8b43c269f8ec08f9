/* kernels-int.h - helpers private to kernels/ (never included from outside the folder).
 *
 * FV_SCALAR marks a scalar reference function: the reference is the oracle the vectorized
 * kernel is tested against, so the compiler must not vectorize it. gcc honours the
 * optimize() attribute per function; clang ignores it, so every loop in a reference also
 * carries FV_SCALAR_LOOP, which disables vectorization per loop there.
 */
#ifndef FV_KERNELS_INT_H
#define FV_KERNELS_INT_H

#if defined(__clang__)
/* clang ignores optimize(); the references disable vectorization per loop instead. */
#define FV_SCALAR
#define FV_SCALAR_LOOP _Pragma("clang loop vectorize(disable) interleave(disable)")
#elif defined(__GNUC__)
#define FV_SCALAR __attribute__((optimize("no-tree-vectorize")))
#define FV_SCALAR_LOOP
#else
#define FV_SCALAR
#define FV_SCALAR_LOOP
#endif

#endif
