/* logging.h (stand-in) - cr_log_* live in criterion.h here. */
#include "criterion.h"
