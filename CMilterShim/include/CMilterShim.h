/// CMilterShim: the C module over Debian's libmilter (libmilter-dev).
///
/// It holds only what Swift cannot call directly; everything else is Swift, in SplitDaemon's
/// `Libmilter` choke point. Two kinds of shim live here:
///   - libmilter declares string parameters as `char *` although it never writes through them, and
///     Swift will not pass a `String` as `UnsafeMutablePointer<CChar>`. Each `cmilter_*` wrapper below
///     takes `const char *` and casts. They can go once libmilter's header says `const`.
///   - `smfi_setmlreply` is variadic, and Swift refuses variadic C functions.
/// And one from glibc that Swift's Glibc module leaves out (`<malloc.h>`): `malloc_trim` and
/// `mallopt(M_MXFAST, …)`, for the daemon's retirement of replaced rules (SplitDaemon's
/// `RuleRetirement`).
#ifndef CMILTERSHIM_H
#define CMILTERSHIM_H

// mfapi.h typedefs `bool` as int unless told stdbool exists (Postfix's test-milter.c does the same).
#define SM_CONF_STDBOOL_H 1
#include <stdbool.h>
#include <sys/types.h>
#include <libmilter/mfapi.h>
#include <malloc.h>

/// smfi_addrcpt_par(ctx, rcpt, args) with const strings (libmilter copies both before returning).
int cmilter_addrcpt_par(SMFICTX *ctx, const char *rcpt, const char *args);

/// smfi_delrcpt(ctx, rcpt) with a const string.
int cmilter_delrcpt(SMFICTX *ctx, const char *rcpt);

/// smfi_addheader(ctx, name, value) with const strings.
int cmilter_addheader(SMFICTX *ctx, const char *name, const char *value);

/// smfi_setconn(spec) with a const string (libmilter strdup()s it).
int cmilter_setconn(const char *spec);

/// smfi_getsymval(ctx, name) with a const name; the result belongs to libmilter.
const char *cmilter_getsymval(SMFICTX *ctx, const char *name);

/// smfi_setreply(ctx, rcode, xcode, message) with const strings; xcode and message may be NULL.
int cmilter_setreply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *message);

/// smfi_setmlreply with a counted array instead of varargs: Swift cannot call variadic C functions.
/// `count` must be 1...6 (the most lines splitmilter sends); anything else returns MI_FAILURE.
int cmilter_setmlreply_lines(SMFICTX *ctx, const char *rcode, const char *xcode,
                             const char *const *lines, int count);

/// smfi_setsymlist(ctx, stage, macros) with a const list; only valid inside xxfi_negotiate.
int cmilter_setsymlist(SMFICTX *ctx, int stage, const char *macros);

#endif
