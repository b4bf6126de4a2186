/*
 * asan_preload.c
 *	  Preloaded after the AddressSanitizer runtime by test/asan.sh and
 *	  test/fuzz/run.sh; test only.
 *
 * PostgreSQL's binaries pull in libgpg-error, whose constructor calls
 * bindtextdomain() before the ASan runtime has initialized.  The first
 * malloc() there initializes ASan, which looks up swift_demangle with
 * dlsym(); the failed lookup makes dlerror() translate its message, which
 * takes the gettext lock bindtextdomain() already holds, and the process
 * hangs before main().  Defining the symbol makes the lookup succeed.
 */
#include <stddef.h>

char	   *swift_demangle(const char *mangled, size_t len, char *out,
						   size_t *outlen, unsigned flags);

char *
swift_demangle(const char *mangled, size_t len, char *out, size_t *outlen,
			   unsigned flags)
{
	return NULL;				/* not a Swift name: ASan prints it as is */
}
