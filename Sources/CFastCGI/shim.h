// Only the reentrant FCGX API: fcgi_stdio.h redefines printf/FILE and must never be imported.
#include <fcgiapp.h>
#include <fastcgi.h>
