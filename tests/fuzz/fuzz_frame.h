/* fuzz_frame — one stream frame whose header the harness writes: the input
 * is a 7-byte prefix (tensor count u16, metadata count u8, raw size u32,
 * all little-endian) and the payload, plain or (deflate) already deflated.
 * The harness fills in the stored size and a correct CRC and appends a
 * valid end marker, so that mutations reach the payload parser and the
 * inflater instead of stopping at the CRC check. */
#ifndef FUZZ_FRAME_H
#define FUZZ_FRAME_H

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "scratch.h"
#include "kd_stream.h"

static inline void fz_put32(uint8_t *p, uint64_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static inline void fz_put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

static int fuzz_frame(const uint8_t *data, size_t size, int deflate)
{
    if (size < 7)
        return 0;
    uint32_t nt = data[0] | data[1] << 8, nm = data[2];
    uint64_t raw = (uint64_t)data[3] | (uint64_t)data[4] << 8 | (uint64_t)data[5] << 16 | (uint64_t)data[6] << 24;
    const uint8_t *pay = data + 7;
    size_t stored = size - 7;
    if (!deflate)
        raw = stored;
    size_t len = 40 + stored + KD_STREAM_END_MAX;
    uint8_t *buf = malloc(len);
    if (!buf)
        return 0;
    memcpy(buf, "KDT\n", 4);
    buf[4] = 1; /* version */
    buf[5] = 0;
    buf[6] = deflate ? 1 : 0; /* flags */
    buf[7] = 0;
    fz_put32(buf + 8, nt);
    fz_put32(buf + 12, nm);
    fz_put64(buf + 16, stored);
    fz_put64(buf + 24, raw);
    memcpy(buf + 40, pay, stored);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = (uint32_t)crc32(crc, buf, 32);
    crc = (uint32_t)crc32(crc, buf + 40, (uInt)stored);
    fz_put32(buf + 32, crc);
    fz_put32(buf + 36, 0);
    size_t n = 40 + stored + kd_stream_end_encode(1, buf + 40 + stored);
    fuzz_read_stream(buf, n, "frame");
    free(buf);
    return 0;
}

#endif
