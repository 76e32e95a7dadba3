/* The C record framer: the twin of securepair/records/python.py.
 *
 * Rules this file keeps, because the Python twin and the tests assume them:
 *
 * - Same results, same errors, same precedence.  Every check below has a
 *   twin in python.py and runs in the same order, so that the first problem
 *   found in a hostile input is the same problem whichever framer runs.  The
 *   differential tests compare codes, offsets and values; change both files
 *   or neither.
 * - Read only inside [buf, buf + size).  Every length read from the wire is
 *   compared with what is left before it is used.  Positions are int64_t
 *   and lengths are at most 24 bits, so no sum below can overflow.
 * - Allocate nothing.  The caller provides every output buffer; sizes the
 *   caller must provide are returned only once the bytes that justify them
 *   have arrived, so an attacker's declared length never sizes anything.
 * - Make no messages.  Errors leave as small integer codes; the Python side
 *   words them (records/_common.py), so both framers say the same thing.
 */

#include <stdint.h>
#include <string.h>

#include "framer.h"

#ifndef SECUREPAIR_VERSION
#error "SECUREPAIR_VERSION must be defined by the build (csrc/build_framer.py)"
#endif

_Static_assert(SP_INLINE_EXTENSIONS == sizeof(((struct sp_hello *)0)->extension_types) / 2,
               "framer.h: extension_types must hold SP_INLINE_EXTENSIONS entries");

const char *sp_version(void) { return SECUREPAIR_VERSION; }

static inline unsigned u16(const uint8_t *p) { return ((unsigned)p[0] << 8) | p[1]; }

/* The slow path of a header check: which rule failed.  Same order as
 * _check_header in python.py; 0 means the header is acceptable. */
static int check_header(unsigned ct, unsigned version, int64_t length, int64_t max_length,
                        int64_t *value)
{
    if (ct < 20 || ct > 24) {
        *value = ct;
        return SP_SCAN_UNKNOWN_CONTENT_TYPE;
    }
    if ((version >> 8) != 3) {
        *value = version;
        return SP_SCAN_BAD_VERSION;
    }
    if (length > max_length) {
        *value = length;
        return SP_SCAN_RECORD_OVERFLOW;
    }
    if (length == 0 && ct <= 22) {
        *value = ct;
        return SP_SCAN_EMPTY_RECORD;
    }
    return SP_SCAN_OK;
}

int sp_scan(const uint8_t *buf, int64_t size, int64_t start, int64_t max_length,
            int64_t *out, int64_t capacity)
{
    int64_t *summary = out + 4 * capacity;
    int64_t *rec = out;
    int64_t pos = start;
    int64_t count = 0;
    int rc = SP_SCAN_DONE;

    summary[SP_R_PARTIAL] = 0;
    summary[SP_R_NEEDED] = 0;
    summary[SP_R_ERROR] = SP_SCAN_OK;
    while (size - pos >= SP_HEADER_LENGTH) {
        const uint8_t *h = buf + pos;
        unsigned ct = h[0];
        unsigned version = u16(h + 1);
        int64_t length = u16(h + 3);
        int64_t end;

        /* One test for the common case, as in python.py: a known type,
         * major version 3 and a length in range, or an empty record of a
         * type that may be empty (application_data, heartbeat).  Together
         * they accept exactly what check_header accepts. */
        if (!((ct - 20u) <= 4u && h[1] == 3 && length > 0 && length <= max_length) &&
            !(length == 0 && (ct - 23u) <= 1u && h[1] == 3 && max_length >= 0)) {
            int64_t value = 0;
            int code = check_header(ct, version, length, max_length, &value);
            if (code != SP_SCAN_OK) {
                summary[SP_R_ERROR] = code;
                summary[SP_R_ERROR_OFFSET] = pos;
                summary[SP_R_ERROR_VALUE] = value;
                rc = SP_SCAN_ERROR;
                break;
            }
        }
        end = pos + SP_HEADER_LENGTH + length;
        if (end > size) {
            summary[SP_R_NEEDED] = end - size;
            break;
        }
        if (count == capacity) {
            /* Stop before the record, not after: the caller grows its
             * array and resumes here, re-reading one header. */
            rc = SP_SCAN_FULL;
            break;
        }
        rec[0] = ct;
        rec[1] = version;
        rec[2] = pos;
        rec[3] = length;
        rec += 4;
        count++;
        pos = end;
    }
    summary[SP_R_POS] = pos;
    summary[SP_R_COUNT] = count;
    if (rc == SP_SCAN_DONE) {
        summary[SP_R_PARTIAL] = size - pos;
        if (summary[SP_R_NEEDED] == 0 && size > pos)
            summary[SP_R_NEEDED] = SP_HEADER_LENGTH - (size - pos);
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * ClientHello.  Two stages, like python.py: walk the handshake records until
 * the whole message has arrived, then parse its body.  python.py joins the
 * record bodies into a bytearray; here a message carried by one record (all
 * real clients) is parsed where it lies, and only a fragmented one is
 * copied, into scratch space the caller sizes from the returned needed
 * value.  That size is the declared length, asked for only after all of
 * those bytes have been seen.
 */

static int hello_fail(struct sp_hello *h, int code, int64_t value)
{
    h->error = code;
    h->error_value = value;
    return SP_HELLO_ERROR;
}

#define NEED(count, field)                                      \
    do {                                                        \
        if (p + (int64_t)(count) > size)                        \
            return hello_fail(h, SP_HELLO_OVERRUN, (field));    \
    } while (0)

#define MALFORMED(field) return hello_fail(h, SP_HELLO_MALFORMED, (field))

/* A u16 vector with a two-byte length that fills the extension exactly:
 * supported_groups and signature_algorithms. */
static int u16_vector(const uint8_t *ext, int64_t elen, int64_t at, int field,
                      int64_t *offset, int64_t *length, struct sp_hello *h)
{
    unsigned vlen;
    if (elen < 2)
        MALFORMED(field);
    vlen = u16(ext);
    if ((int64_t)vlen != elen - 2 || vlen == 0 || (vlen & 1))
        MALFORMED(field);
    *offset = at + 2;
    *length = vlen;
    return SP_HELLO_OK;
}

/* RFC 6066 3: one host_name entry, printable ASCII (an A-label), other
 * name types skipped. */
static int parse_sni(const uint8_t *ext, int64_t elen, int64_t at, struct sp_hello *h)
{
    int64_t q = 2;
    int64_t name = -1;
    int64_t name_length = 0;

    if (elen < 2 || (int64_t)u16(ext) != elen - 2 || elen == 2)
        MALFORMED(SP_F_SERVER_NAME);
    while (q < elen) {
        unsigned ntype;
        int64_t nlen;
        if (q + 3 > elen)
            MALFORMED(SP_F_SERVER_NAME);
        ntype = ext[q];
        nlen = u16(ext + q + 1);
        q += 3;
        if (q + nlen > elen)
            MALFORMED(SP_F_SERVER_NAME);
        if (ntype == 0) {
            int64_t i;
            if (name >= 0 || nlen == 0)
                MALFORMED(SP_F_SERVER_NAME);
            for (i = 0; i < nlen; i++) {
                if (ext[q + i] < 0x21 || ext[q + i] > 0x7E)
                    MALFORMED(SP_F_SERVER_NAME);
            }
            name = at + q;
            name_length = nlen;
        }
        q += nlen;
    }
    if (name < 0)
        MALFORMED(SP_F_SERVER_NAME);
    h->server_name = name;
    h->server_name_length = name_length;
    return SP_HELLO_OK;
}

static int parse_alpn(const uint8_t *ext, int64_t elen, int64_t at, struct sp_hello *h)
{
    int64_t q = 2;

    if (elen < 2 || (int64_t)u16(ext) != elen - 2 || elen == 2)
        MALFORMED(SP_F_ALPN);
    while (q < elen) {
        int64_t plen = ext[q];
        q += 1;
        if (plen == 0 || q + plen > elen)
            MALFORMED(SP_F_ALPN);
        q += plen;
    }
    h->alpn = at + 2;
    h->alpn_length = elen - 2;
    return SP_HELLO_OK;
}

/* The body of the handshake message: data[body, body + size). */
static int parse_body(const uint8_t *data, int64_t body, int64_t size, struct sp_hello *h)
{
    const uint8_t *b = data + body;
    int64_t p = 0;
    unsigned sid_len, cs_len, comp_len;
    /* One bit per extension type: duplicates are found in constant time
     * however many extensions the peer packs into 64 KiB. */
    uint8_t seen[65536 / 8];

    NEED(2, SP_F_LEGACY_VERSION);
    h->legacy_version = u16(b);
    p = 2;
    NEED(32, SP_F_RANDOM);
    h->random = body + p;
    p += 32;
    NEED(1, SP_F_SESSION_ID);
    sid_len = b[p];
    p += 1;
    if (sid_len > 32)
        MALFORMED(SP_F_SESSION_ID);
    NEED(sid_len, SP_F_SESSION_ID);
    h->session_id = body + p;
    h->session_id_length = sid_len;
    p += sid_len;
    NEED(2, SP_F_CIPHER_SUITES);
    cs_len = u16(b + p);
    p += 2;
    if (cs_len == 0 || (cs_len & 1))
        MALFORMED(SP_F_CIPHER_SUITES);
    NEED(cs_len, SP_F_CIPHER_SUITES);
    h->cipher_suites = body + p;
    h->cipher_suites_length = cs_len;
    p += cs_len;
    NEED(1, SP_F_COMPRESSION);
    comp_len = b[p];
    p += 1;
    if (comp_len == 0)
        MALFORMED(SP_F_COMPRESSION);
    NEED(comp_len, SP_F_COMPRESSION);
    h->compression = body + p;
    h->compression_length = comp_len;
    p += comp_len;

    if (p < size) {
        unsigned ext_total;
        NEED(2, SP_F_EXTENSIONS);
        ext_total = u16(b + p);
        p += 2;
        NEED(ext_total, SP_F_EXTENSIONS);
        if (p + ext_total != size)
            MALFORMED(SP_F_MESSAGE);
        h->extensions = body + p;
        h->extensions_end = body + size;
        memset(seen, 0, sizeof seen);
        while (p < size) {
            unsigned etype;
            int64_t elen, at;
            int rc = SP_HELLO_OK;
            NEED(4, SP_F_EXTENSION);
            etype = u16(b + p);
            elen = u16(b + p + 2);
            p += 4;
            NEED(elen, SP_F_EXTENSION);
            if (seen[etype >> 3] & (1u << (etype & 7)))
                return hello_fail(h, SP_HELLO_DUPLICATE_EXTENSION, etype);
            seen[etype >> 3] |= (uint8_t)(1u << (etype & 7));
            if (h->extension_count < SP_INLINE_EXTENSIONS)
                h->extension_types[h->extension_count] = (uint16_t)etype;
            h->extension_count++;
            at = body + p;
            switch (etype) {
            case 0:
                rc = parse_sni(b + p, elen, at, h);
                break;
            case 16:
                rc = parse_alpn(b + p, elen, at, h);
                break;
            case 43: {
                /* A one-byte length, unlike the other lists. */
                const uint8_t *ext = b + p;
                if (elen < 1 || ext[0] != elen - 1 || ext[0] < 2 || (ext[0] & 1))
                    MALFORMED(SP_F_SUPPORTED_VERSIONS);
                h->supported_versions = at + 1;
                h->supported_versions_length = elen - 1;
                break;
            }
            case 10:
                rc = u16_vector(b + p, elen, at, SP_F_SUPPORTED_GROUPS, &h->supported_groups,
                                &h->supported_groups_length, h);
                break;
            case 13:
                rc = u16_vector(b + p, elen, at, SP_F_SIGNATURE_ALGORITHMS,
                                &h->signature_algorithms, &h->signature_algorithms_length, h);
                break;
            default:
                break;
            }
            if (rc != SP_HELLO_OK)
                return rc;
            p += elen;
        }
    }
    return SP_HELLO_OK;
}

#undef NEED
#undef MALFORMED

static void hello_reset(struct sp_hello *h)
{
    memset(h, 0, sizeof *h);
    h->server_name = -1;
    h->alpn = -1;
    h->supported_versions = -1;
    h->supported_groups = -1;
    h->signature_algorithms = -1;
    h->extensions = -1;
}

int sp_parse_client_hello(const uint8_t *buf, int64_t size, uint8_t *scratch,
                          int64_t scratch_size, struct sp_hello *h)
{
    int64_t pos = 0;
    int64_t hs_len = 0;       /* handshake bytes seen so far */
    int64_t declared = 0;     /* valid once hs_len >= 4 */
    int64_t records = 0;
    int64_t first_version = -1;
    uint8_t head[4];          /* the handshake header, which may itself be split */

    hello_reset(h);
    for (;;) {
        int64_t have = size - pos;
        const uint8_t *r;
        unsigned ct, version;
        int64_t length, end, i;
        int code;

        if (have < SP_HEADER_LENGTH) {
            int64_t rest = hs_len >= 4 ? 4 + declared - hs_len : 4 - hs_len;
            h->needed = SP_HEADER_LENGTH + rest - have;
            return SP_HELLO_NEED_DATA;
        }
        r = buf + pos;
        ct = r[0];
        version = u16(r + 1);
        length = u16(r + 3);
        code = check_header(ct, version, length, SP_MAX_PLAINTEXT, &h->error_value);
        if (code != SP_SCAN_OK) {
            h->error = code;
            h->error_offset = pos;
            return SP_HELLO_RECORD_ERROR;
        }
        if (ct != 22)
            return hello_fail(h, first_version < 0 ? SP_HELLO_NOT_HANDSHAKE
                                                   : SP_HELLO_INTERLEAVED, ct);
        if (first_version < 0)
            first_version = version;
        end = pos + SP_HEADER_LENGTH + length;
        if (end > size) {
            h->needed = end - size;
            return SP_HELLO_NEED_DATA;
        }
        for (i = 0; hs_len + i < 4 && i < length; i++)
            head[hs_len + i] = r[SP_HEADER_LENGTH + i];
        hs_len += length;
        records++;
        pos = end;
        /* check_header refused empty handshake records, so head[0] is set. */
        if (head[0] != 1)
            return hello_fail(h, SP_HELLO_NOT_CLIENT_HELLO, head[0]);
        if (hs_len >= 4) {
            declared = ((int64_t)head[1] << 16) | ((int64_t)head[2] << 8) | head[3];
            if (declared > SP_MAX_CLIENT_HELLO_LENGTH)
                return hello_fail(h, SP_HELLO_TOO_LONG, declared);
            if (hs_len >= 4 + declared)
                break;
        }
    }

    h->record_version = first_version;
    h->length = declared;
    h->end = pos;
    if (records == 1) {
        h->body = SP_HEADER_LENGTH + 4;
        return parse_body(buf, h->body, declared, h);
    }
    if (declared == 0) {
        /* Nothing to join (the header alone came in pieces): parse the
         * empty body without asking for zero bytes of scratch. */
        h->body = pos;
        return parse_body(buf, h->body, 0, h);
    }

    /* Fragmented: copy the body out of the records into scratch. */
    if (scratch == NULL || scratch_size < declared) {
        h->needed = declared;
        return SP_HELLO_NEED_SCRATCH;
    }
    {
        /* The walk above checked every header.  The lengths are read again
         * here, and bounded again: the caller's buffer may be a bytearray
         * that another thread writes to while the GIL is released, and a
         * changed byte must give a wrong answer, never a read out of it. */
        int64_t skip = 4, copied = 0;
        pos = 0;
        while (copied < declared && size - pos >= SP_HEADER_LENGTH) {
            int64_t record_length = u16(buf + pos + 3);
            int64_t from = pos + SP_HEADER_LENGTH;
            int64_t length = record_length < size - from ? record_length : size - from;
            int64_t take;
            if (skip) {
                int64_t s = skip < length ? skip : length;
                from += s;
                length -= s;
                skip -= s;
            }
            take = declared - copied < length ? declared - copied : length;
            memcpy(scratch + copied, buf + from, (size_t)take);
            copied += take;
            pos += SP_HEADER_LENGTH + record_length;
        }
        if (copied < declared)
            memset(scratch + copied, 0, (size_t)(declared - copied));
    }
    h->gathered = 1;
    h->body = 0;
    return parse_body(scratch, 0, declared, h);
}

int64_t sp_hello_extension_types(const uint8_t *data, const struct sp_hello *h, uint16_t *out,
                                 int64_t capacity)
{
    int64_t p = h->extensions, count = 0;

    if (p < 0)
        return 0;
    /* The block was validated by sp_parse_client_hello; the bounds are
     * checked again anyway, so a caller passing the wrong data cannot make
     * this read past extensions_end. */
    while (p + 4 <= h->extensions_end && count < capacity) {
        out[count++] = (uint16_t)u16(data + p);
        p += 4 + u16(data + p + 2);
    }
    return count;
}
