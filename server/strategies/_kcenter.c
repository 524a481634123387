/*
 * Compiled loops of the exact k-center greedy (kcenter_cover.py,
 * kcenter_update.py). Loaded with ctypes; the module object exists only so
 * that setuptools builds and installs this file beside the Python modules.
 *
 * exact_distances: the exact squared distance of a pool row x (as the
 * client sent it, float32 or float64) to a shifted float64 center c,
 *     d = ((-2 * dot(x - shift, c)) + ||x - shift||^2) + ||c||^2,
 * clipped below at 0, where dot sums its terms in eight running partial
 * sums (term j goes to sum j mod 8), combined as ((s0+s1)+(s2+s3)) +
 * ((s4+s5)+(s6+s7)), then the terms past the last multiple of eight in
 * order. Every operation is one IEEE double rounding (no fused
 * multiply-add: built with -ffp-contract=off), so the bits do not depend
 * on the machine or on how the compiler vectorises the eight sums; the
 * numpy twin in kcenter_cover.py computes the same bits.
 *
 * update_group: one round of the greedy on one group of the partition,
 * the bounds of LazyCover in one pass per (row, center) pair; see
 * kcenter_update._apply_group and _screen, of which it is the compiled
 * form. The float32 products of the bounds may be summed in any order:
 * their rounding margins hold for any.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* On x86-64 with GCC or Clang, the exported loops are also built for AVX2
 * and chosen at load time; the bits are the same either way (no fused
 * multiply-add, every sum in the order the source gives). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WIDE __attribute__((target_clones("avx2", "default")))
#else
#define WIDE
#endif
/* Helpers are inlined into each build of the exported loops. */
#define INLINE static inline __attribute__((always_inline))

/* Raised whenever Cover or an exported signature changes: kcenter_native
 * refuses a library built from other source (a stale editable build). */
#define LAYOUT 1

int64_t layout_version(void) { return LAYOUT; }

typedef struct {
    const void *embeddings;   /* pool order, n_pool x n_features */
    int64_t embeddings_f64;   /* 1: float64, 0: float32 */
    int64_t n_features;
    const int64_t *order;     /* partition position -> pool row */
    const double *shift;      /* n_features */
    const double *reach;      /* partition order */
    const double *row_norms;  /* partition order, ||x - shift||^2 */
    const float *lifted;      /* partition order, n_pool x lift_width; or NULL */
    int64_t lift_width;
    const float *screen;      /* pool order, n_pool x n_features */
    const double *screen_norms;         /* pool order */
    const double *centers;              /* capacity x n_features */
    const double *center_norms;
    const float *screen_centers;        /* capacity x n_features */
    const double *screen_center_norms;
    const float *lifted_centers;        /* capacity x lift_width; or NULL */
    const double *middles;              /* groups x n_features */
    const double *middle_norms;
    double slack, lift_slack, screen_slack;
    /* Scratch of capacity entries, for one thread. */
    double *low;
    double *half;
    int64_t *candidates;
    double *screened;
} Cover;

INLINE double dot_shifted_f32(const float *x, const double *shift,
                              const double *c, int64_t n)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int k = 0; k < 8; k++) {
            s[k] += ((double)x[j + k] - shift[j + k]) * c[j + k];
        }
    }
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) {
        t += ((double)x[j] - shift[j]) * c[j];
    }
    return t;
}

INLINE double dot_shifted_f64(const double *x, const double *shift,
                              const double *c, int64_t n)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int k = 0; k < 8; k++) {
            s[k] += (x[j + k] - shift[j + k]) * c[j + k];
        }
    }
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) {
        t += (x[j] - shift[j]) * c[j];
    }
    return t;
}

INLINE double finish(double dot, double row_norm, double center_norm)
{
    double d = -2.0 * dot;
    d += row_norm;
    d += center_norm;
    return d > 0.0 ? d : 0.0;
}

/* Exact squared distances of n pairs: row rows[i] of x (n_rows x
 * n_features, float32 if x_f64 is 0) to center centers[i] of c (shifted,
 * float64); centers NULL: center 0 for every pair. */
WIDE void exact_distances(const void *x, int64_t x_f64, const int64_t *rows,
                     const double *shift, const double *row_norms,
                     const double *c, const int64_t *centers,
                     const double *center_norms, int64_t n,
                     int64_t n_features, double *out)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t row = rows ? rows[i] : i;
        int64_t center = centers ? centers[i] : 0;
        const double *cc = c + center * n_features;
        double dot;
        if (x_f64) {
            dot = dot_shifted_f64((const double *)x + row * n_features, shift,
                                  cc, n_features);
        } else {
            dot = dot_shifted_f32((const float *)x + row * n_features, shift,
                                  cc, n_features);
        }
        out[i] = finish(dot, row_norms[i], center_norms[center]);
    }
}

/* Squared norms of n float64 rows, summed as the dot of exact_distances:
 * the distance of a row to itself is then exactly 0. */
WIDE void exact_norms(const double *x, int64_t n, int64_t n_features, double *out)
{
    for (int64_t i = 0; i < n; i++) {
        const double *row = x + i * n_features;
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= n_features; j += 8) {
            for (int k = 0; k < 8; k++) {
                s[k] += row[j + k] * row[j + k];
            }
        }
        double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        for (; j < n_features; j++) {
            t += row[j] * row[j];
        }
        out[i] = t;
    }
}

INLINE float dot_f32(const float *a, const float *b, int64_t n)
{
    float s[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        for (int k = 0; k < 16; k++) {
            s[k] += a[j + k] * b[j + k];
        }
    }
    float t = 0.0f;
    for (int k = 0; k < 16; k++) {
        t += s[k];
    }
    for (; j < n; j++) {
        t += a[j] * b[j];
    }
    return t;
}

INLINE double dot_f64(const double *a, const double *b, int64_t n)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int k = 0; k < 8; k++) {
            s[k] += a[j + k] * b[j + k];
        }
    }
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) {
        t += a[j] * b[j];
    }
    return t;
}

/* Apply centers [first, stop) to the rows [row_start, row_stop) of group
 * `group` (partition positions), lowering `nearest`. counts[0] += exact
 * distances computed, counts[1] += pairs screened. Returns the largest
 * nearest distance of the rows afterwards. */
WIDE double update_group(const Cover *cv, double *nearest, int64_t group,
                    int64_t row_start, int64_t row_stop, int64_t first,
                    int64_t stop, int64_t *counts)
{
    const int64_t d = cv->n_features;
    const double *middle = cv->middles + group * d;
    const double twice_slack = 2.0 * cv->slack;
    const double margin = 2.0 * (cv->slack + cv->screen_slack);
    int64_t evaluations = 0, screened = 0;
    /* Triangle inequality about the group's center m: c can lower x only
     * if reach(x) + sqrt(nearest(x) + 2 slack) >= sqrt(d(c, m) - 2 slack). */
    for (int64_t c = first; c < stop; c++) {
        double to_middle = -2.0 * dot_f64(cv->centers + c * d, middle, d);
        to_middle += cv->center_norms[c];
        to_middle += cv->middle_norms[group];
        to_middle -= twice_slack;
        cv->low[c] = sqrt(to_middle > 0.0 ? to_middle : 0.0);
        cv->half[c] = 0.5 * cv->center_norms[c];
    }
    double largest = -INFINITY;
    for (int64_t p = row_start; p < row_stop; p++) {
        double near = nearest[p];
        if (!(near >= 0.0)) {
            /* A removed row (-1): it reaches nothing. */
            largest = near > largest ? near : largest;
            continue;
        }
        double radius = sqrt(near + twice_slack) + cv->reach[p];
        double row_half =
            0.5 * (cv->row_norms[p] - (near + (cv->lift_slack + twice_slack)));
        const float *lift = cv->lifted ? cv->lifted + p * cv->lift_width : NULL;
        int64_t sample = cv->order[p];
        const float *screen = cv->screen + sample * d;
        double screen_norm = cv->screen_norms[sample];
        int64_t n_candidates = 0;
        double lowest = INFINITY;
        for (int64_t c = first; c < stop; c++) {
            if (!(radius >= cv->low[c])) {
                continue;
            }
            if (lift) {
                /* The projection bound: ||x||^2 + ||c||^2 - 2 p(x).p(c)
                 * <= limit(x), as p(x).p(c) >= half the rest. */
                double product = (double)dot_f32(
                    lift, cv->lifted_centers + c * cv->lift_width,
                    cv->lift_width);
                if (!(product >= row_half + cv->half[c])) {
                    continue;
                }
            }
            double approx =
                -2.0 * (double)dot_f32(screen, cv->screen_centers + c * d, d);
            approx += screen_norm;
            approx += cv->screen_center_norms[c];
            cv->candidates[n_candidates] = c;
            cv->screened[n_candidates] = approx;
            n_candidates++;
            lowest = approx < lowest ? approx : lowest;
        }
        screened += n_candidates;
        if (n_candidates) {
            /* A pair can set the row's new nearest distance only if its
             * screened distance is within 2 * margin of the lowest upper
             * bound on it. */
            double ceiling = lowest + margin;
            ceiling = (near < ceiling ? near : ceiling) + margin;
            for (int64_t k = 0; k < n_candidates; k++) {
                if (!(cv->screened[k] <= ceiling)) {
                    continue;
                }
                int64_t c = cv->candidates[k];
                const double *center = cv->centers + c * d;
                double dot;
                if (cv->embeddings_f64) {
                    dot = dot_shifted_f64(
                        (const double *)cv->embeddings + sample * d,
                        cv->shift, center, d);
                } else {
                    dot = dot_shifted_f32(
                        (const float *)cv->embeddings + sample * d,
                        cv->shift, center, d);
                }
                double distance =
                    finish(dot, cv->row_norms[p], cv->center_norms[c]);
                evaluations++;
                if (distance < near) {
                    near = distance;
                }
            }
            nearest[p] = near;
        }
        largest = near > largest ? near : largest;
    }
    counts[0] += evaluations;
    counts[1] += screened;
    return largest;
}

/* The rounds of one pick (LazyCover.farthest): while some stale group's
 * bound reaches the largest bound, update every such group (update_group).
 * Returns 0 when no stale group can hold the next pick. A round that would
 * screen at least split_pairs pairs (0: none) is not run: its groups go to
 * `large` and their number is returned, for the caller to split over its
 * threads. */
WIDE int64_t pick_rounds(const Cover *cv, double *nearest, double *bound,
                         int64_t *applied, const int64_t *starts,
                         int64_t n_groups, int64_t n_centers,
                         int64_t split_pairs, int64_t *counts, int64_t *large)
{
    for (;;) {
        double top = -INFINITY;
        for (int64_t g = 0; g < n_groups; g++) {
            top = bound[g] > top ? bound[g] : top;
        }
        int64_t n_large = 0, pairs = 0;
        for (int64_t g = 0; g < n_groups; g++) {
            if (applied[g] < n_centers && bound[g] >= top) {
                large[n_large++] = g;
                pairs += (starts[g + 1] - starts[g]) * (n_centers - applied[g]);
            }
        }
        if (n_large == 0) {
            return 0;
        }
        if (split_pairs > 0 && pairs >= split_pairs) {
            return n_large;
        }
        for (int64_t i = 0; i < n_large; i++) {
            int64_t g = large[i];
            bound[g] = update_group(cv, nearest, g, starts[g], starts[g + 1],
                                    applied[g], n_centers, counts);
            applied[g] = n_centers;
        }
    }
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kcenter",
    "Compiled loops of the exact k-center greedy, called through ctypes.",
    -1, NULL,
};

PyMODINIT_FUNC PyInit__kcenter(void) { return PyModule_Create(&module); }
