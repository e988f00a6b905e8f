// The wrappers declared in CResolvShim.h.
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <netdb.h>
#include <resolv.h>
#include <string.h>
#include "CResolvShim.h"

int cresolv_query(const char *server, int port, const char *name, int type, unsigned char *answer, int size,
                  int *length) {
    struct __res_state state;
    memset(&state, 0, sizeof state);
    if (res_ninit(&state) != 0) return CRESOLV_FAILURE;
    if (server != NULL) {
        struct in_addr address;
        if (inet_pton(AF_INET, server, &address) != 1) {
            res_nclose(&state);
            return CRESOLV_FAILURE;
        }
        state.nscount = 1;
        state.nsaddr_list[0].sin_family = AF_INET;
        state.nsaddr_list[0].sin_addr = address;
        state.nsaddr_list[0].sin_port = htons(port > 0 ? port : 53);
    }
    state.retrans = 2;
    state.retry = 2;
    int n = res_nquery(&state, name, ns_c_in, type, answer, size);
    int herror = state.res_h_errno;
    res_nclose(&state);
    if (n >= 0) {
        *length = n;
        return CRESOLV_ANSWER;
    }
    return (herror == HOST_NOT_FOUND || herror == NO_DATA) ? CRESOLV_NO_DATA : CRESOLV_FAILURE;
}

int cresolv_answer_count(const unsigned char *message, int length) {
    ns_msg handle;
    if (ns_initparse(message, length, &handle) != 0) return -1;
    return ns_msg_count(handle, ns_s_an);
}

int cresolv_answer_record(const unsigned char *message, int length, int index, int *type,
                          const unsigned char **data, int *dataLength) {
    ns_msg handle;
    ns_rr record;
    if (ns_initparse(message, length, &handle) != 0) return -1;
    if (ns_parserr(&handle, ns_s_an, index, &record) != 0) return -1;
    *type = ns_rr_type(record);
    *data = ns_rr_rdata(record);
    *dataLength = ns_rr_rdlen(record);
    return 0;
}

int cresolv_expand_name(const unsigned char *message, int length, const unsigned char *source, char *name,
                        int size) {
    return dn_expand(message, message + length, source, name, size) < 0 ? -1 : 0;
}
