/* Sanitizer driver for framer.c: run under -fsanitize=address,undefined.
 *
 * Invariant: for every input -- hostile hand-made ones, every prefix of real
 * ClientHellos, and a few hundred thousand random and mutated buffers --
 * the framer reads only inside the input, writes only inside the buffers it
 * was given, triggers no undefined behaviour, and reports results that lie
 * inside the data they describe.  Each input sits in a heap block of exactly
 * its size, so AddressSanitizer catches a read even one byte past the end.
 *
 * Usage: sanitize_framer [iterations]   (make -C csrc sanitize runs it)
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framer.h"

static const uint8_t HELLO13[] = {
    0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00, 0x00, 0xec, 0x03, 0x03, 0x00, 0x01, 0x02, 0x03, 0x04,
    0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14,
    0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
    0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x00, 0x12, 0x13, 0x01,
    0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9e, 0x00, 0xff,
    0x01, 0x00, 0x00, 0x91, 0x00, 0x00, 0x00, 0x15, 0x00, 0x13, 0x00, 0x00, 0x10, 0x73, 0x61, 0x6e,
    0x69, 0x74, 0x69, 0x7a, 0x65, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0x17, 0x00,
    0x00, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17,
    0x00, 0x18, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68,
    0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x0d, 0x00, 0x0e, 0x00, 0x0c,
    0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x00, 0x33, 0x00, 0x26,
    0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x2b, 0x00, 0x05,
    0x04, 0x03, 0x04, 0x03, 0x03,
};
static const uint8_t HELLO12[] = {
    0x16, 0x03, 0x01, 0x00, 0x86, 0x01, 0x00, 0x00, 0x82, 0x03, 0x03, 0x00, 0x01, 0x02, 0x03, 0x04,
    0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14,
    0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x00, 0x00, 0x0c, 0xc0, 0x2b,
    0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9e, 0x00, 0xff, 0x01, 0x00, 0x00, 0x4d, 0x00, 0x00,
    0x00, 0x12, 0x00, 0x10, 0x00, 0x00, 0x0d, 0x74, 0x6c, 0x73, 0x31, 0x32, 0x2e, 0x65, 0x78, 0x61,
    0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
    0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x0d, 0x00, 0x0e, 0x00, 0x0c, 0x04, 0x03, 0x08, 0x04,
    0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x00, 0x10, 0x00, 0x0b, 0x00, 0x09, 0x08, 0x68,
    0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x23, 0x00, 0x00,
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* xorshift64*: fixed seed, so a failure reproduces run after run. */
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static unsigned long long inputs, records_seen, hellos_ok, checksum;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "sanitize_framer: check failed at %s:%d: %s\n", __FILE__,   \
                    __LINE__, #cond);                                                 \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Touch every byte of a span the framer reported, so that a span pointing
 * outside the data is an ASan report, not a silent wrong answer. */
static void touch(const uint8_t *data, int64_t size, int64_t offset, int64_t length)
{
    int64_t i;
    if (offset < 0)
        return;
    CHECK(length >= 0 && offset + length <= size);
    for (i = 0; i < length; i++)
        checksum += data[offset + i];
}

static void run_scan(const uint8_t *buf, int64_t n, int64_t capacity, int64_t max_length)
{
    int64_t *out = malloc(sizeof(int64_t) * (size_t)(4 * capacity + SP_SCAN_SUMMARY));
    int64_t *summary = out + 4 * capacity;
    int64_t pos = 0, total = 0, last_end = 0;
    int rc;

    CHECK(out != NULL);
    for (;;) {
        int64_t i;
        rc = sp_scan(buf, n, pos, max_length, out, capacity);
        CHECK(summary[SP_R_COUNT] >= 0 && summary[SP_R_COUNT] <= capacity);
        for (i = 0; i < summary[SP_R_COUNT]; i++) {
            const int64_t *r = out + 4 * i;
            CHECK(r[0] >= 20 && r[0] <= 24 && (r[1] >> 8) == 3);
            CHECK(r[2] == last_end && r[3] >= 0 && r[2] + 5 + r[3] <= n);
            last_end = r[2] + 5 + r[3];
        }
        total += summary[SP_R_COUNT];
        pos = summary[SP_R_POS];
        CHECK(pos == last_end);
        if (rc != SP_SCAN_FULL)
            break;
        CHECK(summary[SP_R_COUNT] == capacity);
    }
    if (rc == SP_SCAN_DONE) {
        CHECK(summary[SP_R_PARTIAL] == n - pos);
        CHECK(summary[SP_R_NEEDED] >= 0);
        CHECK((summary[SP_R_PARTIAL] == 0) == (summary[SP_R_NEEDED] == 0));
    } else {
        CHECK(rc == SP_SCAN_ERROR);
        CHECK(summary[SP_R_ERROR] >= 1 && summary[SP_R_ERROR] <= 4);
        CHECK(summary[SP_R_ERROR_OFFSET] == pos && pos + 5 <= n);
    }
    records_seen += (unsigned long long)total;
    free(out);
}

static void run_hello(const uint8_t *buf, int64_t n)
{
    struct sp_hello h;
    uint8_t *scratch = NULL;
    const uint8_t *data = buf;
    int64_t size = n;
    int rc = sp_parse_client_hello(buf, n, NULL, 0, &h);

    if (rc == SP_HELLO_NEED_SCRATCH) {
        CHECK(h.needed > 0 && h.needed <= SP_MAX_CLIENT_HELLO_LENGTH && h.needed <= n);
        scratch = malloc((size_t)h.needed);
        CHECK(scratch != NULL);
        size = h.needed;
        rc = sp_parse_client_hello(buf, n, scratch, size, &h);
        CHECK(rc != SP_HELLO_NEED_SCRATCH);
    }
    if (rc == SP_HELLO_NEED_DATA)
        CHECK(h.needed >= 1);
    if (rc == SP_HELLO_OK) {
        uint16_t *types;
        int64_t count, i;
        hellos_ok++;
        if (h.gathered)
            data = scratch;
        CHECK(h.end <= n);
        touch(data, size, h.body, h.length);
        touch(data, size, h.random, 32);
        touch(data, size, h.session_id, h.session_id_length);
        touch(data, size, h.cipher_suites, h.cipher_suites_length);
        touch(data, size, h.compression, h.compression_length);
        touch(data, size, h.server_name, h.server_name_length);
        touch(data, size, h.alpn, h.alpn_length);
        touch(data, size, h.supported_versions, h.supported_versions_length);
        touch(data, size, h.supported_groups, h.supported_groups_length);
        touch(data, size, h.signature_algorithms, h.signature_algorithms_length);
        if (h.extensions >= 0)
            touch(data, size, h.extensions, h.extensions_end - h.extensions);
        count = h.extension_count;
        types = malloc(sizeof(uint16_t) * (size_t)(count ? count : 1));
        CHECK(types != NULL);
        CHECK(sp_hello_extension_types(data, &h, types, count) == count);
        for (i = 0; i < count && i < SP_INLINE_EXTENSIONS; i++)
            CHECK(types[i] == h.extension_types[i]);
        free(types);
    }
    free(scratch);
}

/* Run everything on an exact-size heap copy of data[0:n]. */
static void run(const uint8_t *data, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    static const int64_t limits[] = {18432, 16640, 16384, 0, -1, 65535};
    CHECK(copy != NULL);
    memcpy(copy, data, n);
    /* Shrink the block to exactly n bytes where n is 0: a 1-byte block would
     * hide a read of buf[0] in an empty input. */
    if (n == 0) {
        free(copy);
        copy = malloc(0);
    }
    run_scan(copy, (int64_t)n, 1 + (int64_t)below(4), limits[below(6)]);
    run_scan(copy, (int64_t)n, 64, 18432);
    run_hello(copy, (int64_t)n);
    free(copy);
    inputs++;
}

/* Re-record a hello's handshake bytes into records of `step` bytes. */
static size_t fragment(const uint8_t *hello, size_t n, size_t step, uint8_t *out)
{
    size_t len = ((size_t)hello[3] << 8) | hello[4];
    const uint8_t *hs = hello + 5;
    size_t pos = 0, o = 0;
    (void)n;
    while (pos < len) {
        size_t take = len - pos < step ? len - pos : step;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(take >> 8);
        out[o++] = (uint8_t)take;
        memcpy(out + o, hs + pos, take);
        o += take;
        pos += take;
    }
    return o;
}

static size_t mutate(uint8_t *buf, size_t n, size_t cap)
{
    int rounds = 1 + (int)below(4);
    while (rounds-- > 0 && n > 0) {
        size_t pos = below(n);
        switch (below(7)) {
        case 0:
            buf[pos] = (uint8_t)rnd();
            break;
        case 1:
            buf[pos] ^= (uint8_t)(1u << below(8));
            break;
        case 2: { /* a lying 16-bit length */
            static const uint16_t values[] = {0, 1, 2, 3, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF};
            uint16_t v = below(2) ? values[below(8)] : (uint16_t)rnd();
            buf[pos] = (uint8_t)(v >> 8);
            if (pos + 1 < n)
                buf[pos + 1] = (uint8_t)v;
            break;
        }
        case 3: /* a lying 24-bit length */
            buf[pos] = (uint8_t)below(2);
            if (pos + 2 < n) {
                buf[pos + 1] = (uint8_t)rnd();
                buf[pos + 2] = (uint8_t)rnd();
            }
            break;
        case 4:
            n = pos;
            break;
        case 5: {
            size_t k = 1 + below(8);
            if (n + k <= cap) {
                size_t i;
                memmove(buf + pos + k, buf + pos, n - pos);
                for (i = 0; i < k; i++)
                    buf[pos + i] = (uint8_t)rnd();
                n += k;
            }
            break;
        }
        default: {
            size_t k = 1 + below(8);
            if (k > n - pos)
                k = n - pos;
            memmove(buf + pos, buf + pos + k, n - pos - k);
            n -= k;
            break;
        }
        }
    }
    return n;
}

static size_t put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

/* A ClientHello record with `count` empty extensions of distinct types,
 * then extra[extra_len] as raw extension bytes. */
static size_t hello_with_extensions(uint8_t *out, unsigned count, const uint8_t *extra,
                                    size_t extra_len)
{
    uint8_t body[8192];
    size_t b = 0, ext_len_at, i, hs_len;
    b += put16(body + b, 0x0303);
    memset(body + b, 7, 32);
    b += 32;
    body[b++] = 0;
    b += put16(body + b, 2);
    b += put16(body + b, 0x1301);
    body[b++] = 1;
    body[b++] = 0;
    ext_len_at = b;
    b += 2;
    for (i = 0; i < count; i++) {
        b += put16(body + b, 1000 + (unsigned)i);
        b += put16(body + b, 0);
    }
    if (extra_len)
        memcpy(body + b, extra, extra_len);
    b += extra_len;
    put16(body + ext_len_at, (unsigned)(b - ext_len_at - 2));
    hs_len = b;
    out[0] = 22;
    out[1] = 3;
    out[2] = 1;
    put16(out + 3, (unsigned)(hs_len + 4));
    out[5] = 1;
    out[6] = 0;
    put16(out + 7, (unsigned)hs_len);
    memcpy(out + 9, body, hs_len);
    return 9 + hs_len;
}

static void hostile(void)
{
    uint8_t buf[9000];
    size_t n, i;
    /* Empty, and every short prefix of a header. */
    static const uint8_t header[] = {22, 3, 1, 0xFF, 0xFF};
    for (i = 0; i <= sizeof header; i++)
        run(header, i);
    /* Declared lengths that point far past the buffer. */
    {
        static const uint8_t huge_hs[] = {22, 3, 1, 0, 8, 1, 0xFF, 0xFF, 0xFF, 3, 3, 0, 0};
        static const uint8_t big_hs[] = {22, 3, 1, 0, 8, 1, 0x01, 0x00, 0x00, 3, 3, 0, 0};
        static const uint8_t max_rec[] = {23, 3, 3, 0xFF, 0xFF, 0};
        run(huge_hs, sizeof huge_hs);
        run(big_hs, sizeof big_hs);
        run(max_rec, sizeof max_rec);
    }
    /* The handshake header split one byte per record. */
    {
        static const uint8_t split[] = {22, 3, 1, 0, 1, 1, 22, 3, 1, 0, 1, 0,
                                        22, 3, 1, 0, 1, 0, 22, 3, 1, 0, 1, 40};
        for (i = 0; i <= sizeof split; i++)
            run(split, i);
    }
    /* 0xFFFF counts in every length-prefixed list of an extension. */
    {
        static const uint8_t lists[][8] = {
            {0, 0, 0, 4, 0xFF, 0xFF, 0, 0},    /* server_name list */
            {0, 16, 0, 4, 0xFF, 0xFF, 2, 'h'}, /* ALPN list */
            {0, 10, 0, 4, 0xFF, 0xFF, 0, 29},  /* supported_groups */
            {0, 13, 0, 4, 0xFF, 0xFF, 4, 3},   /* signature_algorithms */
            {0, 43, 0, 4, 0xFF, 3, 4, 3},      /* supported_versions */
            {0, 0, 0, 4, 0, 2, 0, 0xFF},       /* host name length 0xFF.. */
            {0, 21, 0xFF, 0xFF, 0, 0, 0, 0},   /* extension length */
            {0, 0, 0, 0, 0, 0, 0, 0},          /* two empty SNI: duplicate */
        };
        for (i = 0; i < sizeof lists / sizeof lists[0]; i++) {
            n = hello_with_extensions(buf, 3, lists[i], 8);
            run(buf, n);
            n = hello_with_extensions(buf, 0, lists[i], 4);
            run(buf, n);
        }
    }
    /* More extensions than are kept inline, whole and fragmented. */
    for (i = 60; i < 70; i++) {
        uint8_t frag[20000];
        n = hello_with_extensions(buf, (unsigned)i * 10, NULL, 0);
        run(buf, n);
        run(frag, fragment(buf, n, 1 + below(300), frag));
    }
    /* SSLv2-style hello, and text. */
    {
        static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15};
        static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        run(sslv2, sizeof sslv2);
        run((const uint8_t *)http, sizeof http - 1);
    }
}

int main(int argc, char **argv)
{
    static uint8_t frag[8 * sizeof HELLO13];
    static uint8_t work[16 * sizeof HELLO13];
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 500000;
    const uint8_t *templates[2] = {HELLO13, HELLO12};
    size_t sizes[2] = {sizeof HELLO13, sizeof HELLO12};
    size_t t, cut, step;
    long i;

    hostile();

    /* Every prefix of each template, whole and fragmented every way. */
    for (t = 0; t < 2; t++) {
        for (cut = 0; cut <= sizes[t]; cut++)
            run(templates[t], cut);
        for (step = 1; step <= 40; step++) {
            size_t n = fragment(templates[t], sizes[t], step, frag);
            for (cut = 0; cut <= n; cut += 1 + step / 8)
                run(frag, cut);
        }
    }

    for (i = 0; i < iterations; i++) {
        size_t n;
        unsigned kind = (unsigned)below(8);
        t = below(2);
        if (kind < 5) {
            /* A real hello, maybe fragmented, then mutated. */
            if (below(3) == 0) {
                n = fragment(templates[t], sizes[t], 1 + below(120), work);
            } else {
                memcpy(work, templates[t], sizes[t]);
                n = sizes[t];
            }
            n = mutate(work, n, sizeof work);
        } else if (kind < 7) {
            /* Random bytes, biased toward record-header values. */
            size_t j;
            n = below(300);
            for (j = 0; j < n; j++) {
                static const uint8_t common[] = {20, 21, 22, 23, 24, 3, 3, 1, 0, 0, 0xFF};
                work[j] = below(2) ? common[below(sizeof common)] : (uint8_t)rnd();
            }
        } else {
            /* A valid record stream, maybe cut or mutated. */
            size_t records = below(40), j;
            n = 0;
            for (j = 0; j < records && n + 5 + 64 < sizeof work; j++) {
                size_t len = below(64);
                unsigned ct = 20 + (unsigned)below(5);
                if (len == 0 && ct <= 22)
                    len = 1;
                work[n++] = (uint8_t)ct;
                work[n++] = 3;
                work[n++] = (uint8_t)below(5);
                n += put16(work + n, (unsigned)len);
                memset(work + n, (int)len, len);
                n += len;
            }
            if (below(2))
                n = below(n + 1);
            if (below(4) == 0)
                n = mutate(work, n, sizeof work);
        }
        run(work, n);
    }

    printf("sanitize_framer: %llu inputs, %llu records, %llu ClientHellos parsed, "
           "no sanitizer reports (checksum %llu)\n",
           inputs, records_seen, hellos_ok, checksum);
    return 0;
}
