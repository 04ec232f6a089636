// libxml2 and Foundation both declare ICU's UErrorCode; with ICU enabled in libxml2's
// headers the two definitions clash. Nothing here needs libxml2's ICU support.
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
