/* errors.h - internal error reporting and deadline helpers. */
#ifndef EXE_ERRORS_H
#define EXE_ERRORS_H

#include <stdint.h>

/* Send a failure that has no caller to the error hook. */
void exe__report_error(const char *what, int code, const char *msg);

/* An absolute CLOCK_MONOTONIC deadline for a relative timeout; -1 = none. */
int64_t exe__deadline(int64_t timeout_ns);

#endif
