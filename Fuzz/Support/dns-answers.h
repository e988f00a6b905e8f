// The dns target's stand-in for the network: libresolv's res_nquery (and res_ninit, res_nclose),
// replaced at link time (ld --wrap) in the fuzz binary only, answers from the fuzz input.
#ifndef FUZZ_DNS_ANSWERS_H
#define FUZZ_DNS_ANSWERS_H
#include <stddef.h>
#include <stdint.h>

/// The answers for the queries to come, in order. Each is a kind byte, a big-endian 16-bit length
/// N and N bytes: kind % 4 == 0, a DNS message; 1, no such name; 2, a server failure; 3, the same
/// message with a length past the caller's buffer (what res_nquery reports for a truncated
/// answer). Once they run out, every query finds no such name.
void fuzz_dns_answers(const uint8_t *data, size_t size);

/// Queries asked since the last fuzz_dns_answers.
int fuzz_dns_queries(void);
#endif
