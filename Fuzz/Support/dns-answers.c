// See dns-answers.h.
#include <netdb.h>
#include <resolv.h>
#include <string.h>
#include "dns-answers.h"

static const uint8_t *answers;
static size_t answers_size, answers_offset;
static int queries;

void fuzz_dns_answers(const uint8_t *data, size_t size) {
    answers = data;
    answers_size = size;
    answers_offset = 0;
    queries = 0;
}

int fuzz_dns_queries(void) { return queries; }

int __wrap___res_ninit(res_state state) {
    (void)state;
    return 0;
}

void __wrap___res_nclose(res_state state) { (void)state; }

int __wrap_res_nquery(res_state state, const char *name, int class, int type, unsigned char *answer, int size) {
    (void)name, (void)class, (void)type;
    queries++;
    if (answers_size - answers_offset < 3) {
        state->res_h_errno = HOST_NOT_FOUND;
        return -1;
    }
    const uint8_t *record = answers + answers_offset;
    size_t length = (size_t)record[1] << 8 | record[2];
    if (length > answers_size - answers_offset - 3) length = answers_size - answers_offset - 3;
    answers_offset += 3 + length;
    switch (record[0] % 4) {
    case 1:
        state->res_h_errno = HOST_NOT_FOUND;
        return -1;
    case 2:
        state->res_h_errno = TRY_AGAIN;
        return -1;
    default: {
        size_t copied = length < (size_t)size ? length : (size_t)size;
        memcpy(answer, record + 3, copied);
        return record[0] % 4 == 3 ? size + (int)length + 1 : (int)length;
    }
    }
}
