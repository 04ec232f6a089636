// zlib, for the raw Deflate that ASP.NET's compressionEnabled="true" uses (System.IO.Compression.DeflateStream).
#include <zlib.h>
