/* check.h -- the C test harness: each test is a function named after the claim it checks; CHECK records a
** failure with file:line and goes on; the runner prints "PASS name" / "FAIL name: why" lines that
** tests/run.sh counts. */
#ifndef PLM_CHECK_H
#define PLM_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failed_;
static int check_nmsg_;   /* messages printed in the current test: only the first few are shown */
static int check_npass_, check_nfail_;

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            if (check_nmsg_++ < 8) printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            check_failed_ = 1;                                                                         \
        }                                                                                              \
    } while (0)

/* |a - b| <= tol, printing both values when not */
#define CHECK_NEAR(a, b, tol)                                                                          \
    do {                                                                                               \
        double a_ = (a), b_ = (b), t_ = (tol);                                                         \
        if (!(fabs(a_ - b_) <= t_)) {                                                                  \
            if (check_nmsg_++ < 8)                                                                     \
                printf("  %s:%d: %s = %.17g, %s = %.17g, |diff| = %.3g > %.3g\n", __FILE__, __LINE__, #a, \
                       a_, #b, b_, fabs(a_ - b_), t_);                                                 \
            check_failed_ = 1;                                                                         \
        }                                                                                              \
    } while (0)

/* relative closeness: |a - b| <= tol * max(1, |b|) */
#define CHECK_REL(a, b, tol) CHECK_NEAR(a, b, (tol) * fmax(1.0, fabs(b)))

#define RUN(test)                                                                                      \
    do {                                                                                               \
        check_failed_ = 0;                                                                             \
        check_nmsg_ = 0;                                                                               \
        test();                                                                                        \
        if (check_failed_) {                                                                           \
            printf("FAIL %s\n", #test);                                                                \
            check_nfail_++;                                                                            \
        } else {                                                                                       \
            printf("PASS %s\n", #test);                                                                \
            check_npass_++;                                                                            \
        }                                                                                              \
        fflush(stdout);                                                                                \
    } while (0)

#define CHECK_DONE() (check_nfail_ ? 1 : 0)

#endif
