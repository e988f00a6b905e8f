/*
 * null-milter: the ceiling of scripts/bench-milter. A libmilter milter that negotiates the same steps
 * as splitmilter and reference-milter.c (HELO, body, end of headers and unknown commands not sent;
 * with -n, connect, MAIL, RCPT and headers not answered and DATA not sent) and does nothing else:
 * what libmilter and the load driver cost by themselves.
 *
 * Usage: null-milter -p SOCKET [-n]
 */

#define SM_CONF_STDBOOL_H 1
#include <libmilter/mfapi.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

static bool no_reply;

/* Stored as the private pointer: the steps negotiated as not answered on this connection. */
static sfsistat answer(SMFICTX *ctx, unsigned long step) {
    return ((unsigned long)smfi_getpriv(ctx) & step) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long actions, unsigned long steps, unsigned long unused2,
                             unsigned long unused3, unsigned long *want_actions, unsigned long *want_steps,
                             unsigned long *unused_p2, unsigned long *unused_p3) {
    (void)actions, (void)unused2, (void)unused3;
    unsigned long skipped = SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN;
    unsigned long silent = 0;
    if (no_reply) {
        silent = SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR; /* RCPT answered, as splitmilter does */
        skipped |= SMFIP_NODATA;
    }
    silent &= steps;
    smfi_setpriv(ctx, (void *)silent);
    *want_actions = 0;
    *want_steps = (skipped & steps) | silent;
    *unused_p2 = 0;
    *unused_p3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *address) {
    (void)host, (void)address;
    return answer(ctx, SMFIP_NR_CONN);
}

static sfsistat on_mail(SMFICTX *ctx, char **argv) {
    (void)argv;
    return answer(ctx, SMFIP_NR_MAIL);
}

static sfsistat on_rcpt(SMFICTX *ctx, char **argv) {
    (void)argv;
    return answer(ctx, SMFIP_NR_RCPT);
}

static sfsistat on_data(SMFICTX *ctx) {
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
    (void)name, (void)value;
    return answer(ctx, SMFIP_NR_HDR);
}

static sfsistat on_eom(SMFICTX *ctx) {
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx) {
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv) {
    const char *socket = NULL;
    int option;
    while ((option = getopt(argc, argv, "p:n")) != -1) {
        switch (option) {
        case 'p': socket = optarg; break;
        case 'n': no_reply = true; break;
        default: socket = NULL, optind = argc + 1; break;
        }
    }
    if (socket == NULL || optind != argc) {
        fprintf(stderr, "usage: null-milter -p SOCKET [-n]\n");
        return 2;
    }
    struct smfiDesc description = {
        .xxfi_name = "null-milter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = 0,
        .xxfi_connect = on_connect,
        .xxfi_envfrom = on_mail,
        .xxfi_envrcpt = on_rcpt,
        .xxfi_header = on_header,
        .xxfi_eom = on_eom,
        .xxfi_close = on_close,
        .xxfi_data = on_data,
        .xxfi_negotiate = on_negotiate,
    };
    if (smfi_setconn((char *)socket) != MI_SUCCESS || smfi_register(description) != MI_SUCCESS ||
        smfi_opensocket(true) != MI_SUCCESS) {
        fprintf(stderr, "null-milter: cannot listen on %s\n", socket);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
