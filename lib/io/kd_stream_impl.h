/* kd_stream_impl — what the stream's writer (kd_stream.c) and reader
 * (kd_stream_read.c) share: the frame layout's constants and the
 * little-endian byte helpers.  The layout is described in kd_stream.c. */
#ifndef KD_STREAM_IMPL_H
#define KD_STREAM_IMPL_H

#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

#define HDR 40
static const unsigned char MAGIC[4] = {'K', 'D', 'T', '\n'};
#define MAX_TENSORS 4096
#define F_DEFLATE 1u
#define F_END 2u

static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static inline uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* CRC over possibly > 4 GiB in pieces zlib's uInt can take. */
static inline uint32_t crc_update(uint32_t crc, const uint8_t *p, uint64_t n)
{
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

static inline int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

#endif
