/* SipHash-1-3 (Aumasson and Bernstein; one compression round, three finalization rounds:
 * the variant CPython uses for str hashes), shared by the name index (_nameindex.c) and
 * the key table (_keytable.c): each keys it with 16 random bytes per compile, so a
 * hostile list cannot choose names that collide or crowd one part of a table. */
#ifndef CLEARWALL_SIPHASH_H
#define CLEARWALL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t
load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                        \
    do {                                                                                \
        v0 += v1;                                                                       \
        v1 = ROTL(v1, 13);                                                              \
        v1 ^= v0;                                                                       \
        v0 = ROTL(v0, 32);                                                              \
        v2 += v3;                                                                       \
        v3 = ROTL(v3, 16);                                                              \
        v3 ^= v2;                                                                       \
        v0 += v3;                                                                       \
        v3 = ROTL(v3, 21);                                                              \
        v3 ^= v0;                                                                       \
        v2 += v1;                                                                       \
        v1 = ROTL(v1, 17);                                                              \
        v1 ^= v2;                                                                       \
        v2 = ROTL(v2, 32);                                                              \
    } while (0)

static inline uint64_t
siphash13(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = ((uint64_t)len) << 56;
    const unsigned char *end = in + (len & ~(size_t)7);

    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    switch (len & 7) {
    case 7: b |= ((uint64_t)in[6]) << 48; /* fall through */
    case 6: b |= ((uint64_t)in[5]) << 40; /* fall through */
    case 5: b |= ((uint64_t)in[4]) << 32; /* fall through */
    case 4: b |= ((uint64_t)in[3]) << 24; /* fall through */
    case 3: b |= ((uint64_t)in[2]) << 16; /* fall through */
    case 2: b |= ((uint64_t)in[1]) << 8;  /* fall through */
    case 1: b |= ((uint64_t)in[0]); break;
    default: break;
    }
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

#endif
