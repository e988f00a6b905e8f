// The wrappers declared in CCryptoShim.h, over libcrypto's EVP interface.
#include <openssl/evp.h>
#include "CCryptoShim.h"

void *ccrypto_sha256_begin(void) {
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (context == NULL) return NULL;
    if (EVP_DigestInit_ex(context, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(context);
        return NULL;
    }
    return context;
}

int ccrypto_sha256_update(void *digest, const void *data, size_t length) {
    return EVP_DigestUpdate((EVP_MD_CTX *)digest, data, length) == 1;
}

int ccrypto_sha256_end(void *digest, unsigned char *out) {
    EVP_MD_CTX *context = digest;
    unsigned int length = 0;
    int ok = out != NULL && EVP_DigestFinal_ex(context, out, &length) == 1 && length == 32;
    EVP_MD_CTX_free(context);
    return ok;
}
