/// CCryptoShim: SHA-256 from OpenSSL's libcrypto (Debian's libssl-dev), for the hash of the rule
/// files as read.
///
/// Swift can call libcrypto itself, but its headers are large and version-dependent; these three
/// wrappers are all the daemon needs: a digest fed in pieces (a rule file, then each file it
/// includes or lists, without joining them in memory), and its 32 bytes at the end.
#ifndef CCRYPTOSHIM_H
#define CCRYPTOSHIM_H

#include <stddef.h>

/// A SHA-256 in progress, or NULL when libcrypto could not allocate one.
void *ccrypto_sha256_begin(void);

/// Adds `length` bytes at `data`. 1 on success, 0 on failure.
int ccrypto_sha256_update(void *digest, const void *data, size_t length);

/// Writes the 32 bytes of the digest into `out` and frees `digest` (also on failure, and when
/// `out` is NULL: then it only frees). 1 on success, 0 on failure.
int ccrypto_sha256_end(void *digest, unsigned char *out);

#endif
