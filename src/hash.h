/* hash.h - content hashes used by the data sets (internal): SHA-256 for provenance, a fast
 * 64-bit hash for duplicate detection, and the splitmix64 / xoshiro256** generators used for
 * seeded splits and augmentation draws. */
#ifndef OTL_HASH_H
#define OTL_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct otl_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} otl_sha256;

void otl_sha256_init(otl_sha256 *s);
void otl_sha256_update(otl_sha256 *s, const void *data, size_t len);
void otl_sha256_final(otl_sha256 *s, uint8_t out[32]);
/* Lower-case hex of a 32-byte digest into hex (65 bytes with the NUL). */
void otl_sha256_hex(const uint8_t digest[32], char hex[65]);

/* 64-bit non-cryptographic hash of a byte string (stable across runs and machines). */
uint64_t otl_hash64(const void *data, size_t len, uint64_t seed);

/* splitmix64 step: advances *state, returns the next output. */
uint64_t otl_splitmix64(uint64_t *state);

typedef struct otl_rng {
    uint64_t s[4];
} otl_rng;

/* xoshiro256** seeded from (seed, stream) through splitmix64. */
void otl_rng_seed(otl_rng *r, uint64_t seed, uint64_t stream);
uint64_t otl_rng_next(otl_rng *r);
double otl_rng_uniform(otl_rng *r);                  /* [0, 1), 53 bits */
uint64_t otl_rng_below(otl_rng *r, uint64_t n);      /* [0, n), unbiased; n > 0 */

#endif
