/* The vector operations of the compiled L-BFGS (_cython_lbfgs.pyx), built
 * for AVX-512, AVX2 and the baseline and picked when the module loads
 * (GCC's target_clones; one build elsewhere).
 *
 * Every clone computes the same bits: the module is compiled without
 * contraction into FMA (CMakeLists.txt), the operations are elementwise,
 * and the sums run over partial sums in a fixed order, which vectors of
 * any width hold lane for lane. At n = 1201 and 10 pairs the loop's own
 * time an iteration went from 18-24 us (SSE2 only) to 13-14 us
 * (docs/dropin.md, "L-BFGS").
 */
#ifndef SN_LBFGS_VECTORS_H
#define SN_LBFGS_VECTORS_H

#include <math.h>
#include <stddef.h>

/* SN_LBFGS_ONE_BUILD: the compiler's flags alone (tests/test_lbfgs.py) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SN_LBFGS_ONE_BUILD)
#define SN_LBFGS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SN_LBFGS_CLONES
#endif

/* sum a[i] b[i] over 32 partial sums (four AVX-512 registers, so the adds
 * do not wait on each other), combined pairwise */
SN_LBFGS_CLONES
static double sn_lbfgs_dot(const double *a, const double *b, ptrdiff_t n)
{
    double acc[32] = {0};
    ptrdiff_t whole = n - n % 32, i;
    int j;
    for (i = 0; i < whole; i += 32)
        for (j = 0; j < 32; j++)
            acc[j] += a[i + j] * b[i + j];
    for (i = whole; i < n; i++)
        acc[i - whole] += a[i] * b[i];
    for (j = 16; j >= 1; j /= 2)
        for (i = 0; i < j; i++)
            acc[i] += acc[i + j];
    return acc[0];
}

/* max |a[i]| */
SN_LBFGS_CLONES
static double sn_lbfgs_max_abs(const double *a, ptrdiff_t n)
{
    double top[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t whole = n - n % 8, i;
    int j;
    for (i = 0; i < whole; i += 8)
        for (j = 0; j < 8; j++)
            top[j] = fabs(a[i + j]) > top[j] ? fabs(a[i + j]) : top[j];
    for (i = whole; i < n; i++)
        top[0] = fabs(a[i]) > top[0] ? fabs(a[i]) : top[0];
    for (j = 1; j < 8; j++)
        top[0] = top[j] > top[0] ? top[j] : top[0];
    return top[0];
}

/* y += a x */
SN_LBFGS_CLONES
static void sn_lbfgs_axpy(double a, const double *x, double *restrict y, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* x = a x */
SN_LBFGS_CLONES
static void sn_lbfgs_scale(double a, double *x, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        x[i] *= a;
}

/* x = stp d + t: a trial point of the line search */
SN_LBFGS_CLONES
static void sn_lbfgs_step(double *restrict x, double stp, const double *d, const double *t,
                          ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        x[i] = stp * d[i] + t[i];
}

/* the correction pair s = stp d, y = g - g_old */
SN_LBFGS_CLONES
static void sn_lbfgs_pair(double *restrict s, double *restrict y, double stp, const double *d,
                          const double *g, const double *g_old, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        s[i] = stp * d[i];
        y[i] = g[i] - g_old[i];
    }
}

#endif
