// libpq, PostgreSQL's client library (Debian libpq-dev), for mode="SQLServer" on PostgreSQL.
#include <libpq-fe.h>
