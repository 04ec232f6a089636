// SQLite 3 (Debian libsqlite3-dev), for mode="SQLServer" with a `sqlite:PATH` connection string.
#include <sqlite3.h>
