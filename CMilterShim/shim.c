// The wrappers declared in CMilterShim.h; each only casts or unrolls varargs.
#include <stddef.h>
#include "CMilterShim.h"

int cmilter_addrcpt_par(SMFICTX *ctx, const char *rcpt, const char *args) {
    return smfi_addrcpt_par(ctx, (char *)rcpt, (char *)args);
}

int cmilter_delrcpt(SMFICTX *ctx, const char *rcpt) {
    return smfi_delrcpt(ctx, (char *)rcpt);
}

int cmilter_addheader(SMFICTX *ctx, const char *name, const char *value) {
    return smfi_addheader(ctx, (char *)name, (char *)value);
}

int cmilter_setconn(const char *spec) {
    return smfi_setconn((char *)spec);
}

const char *cmilter_getsymval(SMFICTX *ctx, const char *name) {
    return smfi_getsymval(ctx, (char *)name);
}

int cmilter_setreply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *message) {
    return smfi_setreply(ctx, (char *)rcode, (char *)xcode, (char *)message);
}

int cmilter_setsymlist(SMFICTX *ctx, int stage, const char *macros) {
    return smfi_setsymlist(ctx, stage, (char *)macros);
}

int cmilter_setmlreply_lines(SMFICTX *ctx, const char *rcode, const char *xcode,
                             const char *const *l, int count) {
    // smfi_setmlreply takes at most 32 lines and a NULL terminator; unroll the common sizes
    // and refuse the rest rather than build a va_list by hand.
    switch (count) {
    case 1: return smfi_setmlreply(ctx, rcode, xcode, l[0], NULL);
    case 2: return smfi_setmlreply(ctx, rcode, xcode, l[0], l[1], NULL);
    case 3: return smfi_setmlreply(ctx, rcode, xcode, l[0], l[1], l[2], NULL);
    case 4: return smfi_setmlreply(ctx, rcode, xcode, l[0], l[1], l[2], l[3], NULL);
    case 5: return smfi_setmlreply(ctx, rcode, xcode, l[0], l[1], l[2], l[3], l[4], NULL);
    case 6: return smfi_setmlreply(ctx, rcode, xcode, l[0], l[1], l[2], l[3], l[4], l[5], NULL);
    default: return MI_FAILURE;
    }
}
