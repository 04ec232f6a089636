// hiredis, Redis's C client library (Debian libhiredis-dev), for the Redis session store.
#include <hiredis/hiredis.h>
