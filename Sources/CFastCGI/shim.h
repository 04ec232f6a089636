// The reentrant FCGX API (for FCGX_OpenSocket) and the protocol definitions. fcgi_stdio.h
// redefines printf/FILE and must never be imported.
#include <fcgiapp.h>
#include <fastcgi.h>
