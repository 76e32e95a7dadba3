/* The C record framer: the twin of securepair/records/python.py.
 *
 * This file is read twice: by the C compiler (framer.c and the cffi module
 * include it after <stdint.h>) and by cffi as the cdef.  So it holds bare
 * prototypes, plain structs and integer #defines only: no #include, no
 * include guard, no expressions in #defines.
 *
 * The numbers below are the ones in securepair/records/_common.py (the
 * Python side builds every message from them); tests/test_records.py checks
 * that both lists agree.
 */

#define SP_SCAN_OK 0
#define SP_SCAN_UNKNOWN_CONTENT_TYPE 1
#define SP_SCAN_BAD_VERSION 2
#define SP_SCAN_RECORD_OVERFLOW 3
#define SP_SCAN_EMPTY_RECORD 4

#define SP_HELLO_NOT_HANDSHAKE 1
#define SP_HELLO_NOT_CLIENT_HELLO 2
#define SP_HELLO_TOO_LONG 3
#define SP_HELLO_INTERLEAVED 4
#define SP_HELLO_OVERRUN 5
#define SP_HELLO_MALFORMED 6
#define SP_HELLO_DUPLICATE_EXTENSION 7

#define SP_F_LEGACY_VERSION 0
#define SP_F_RANDOM 1
#define SP_F_SESSION_ID 2
#define SP_F_CIPHER_SUITES 3
#define SP_F_COMPRESSION 4
#define SP_F_EXTENSIONS 5
#define SP_F_EXTENSION 6
#define SP_F_SERVER_NAME 7
#define SP_F_ALPN 8
#define SP_F_SUPPORTED_VERSIONS 9
#define SP_F_SUPPORTED_GROUPS 10
#define SP_F_SIGNATURE_ALGORITHMS 11
#define SP_F_MESSAGE 12

#define SP_HEADER_LENGTH 5
#define SP_MAX_PLAINTEXT 16384
#define SP_MAX_CLIENT_HELLO_LENGTH 65536

/* sp_scan writes a summary of SP_SCAN_SUMMARY int64s just after the room
 * for capacity records in out, so one array carries the records and the
 * summary (one allocation, one buffer export per call on the Python side). */
#define SP_SCAN_SUMMARY 8
#define SP_R_POS 0          /* where the scan stopped (resume here after SP_SCAN_FULL) */
#define SP_R_COUNT 1        /* records written to out */
#define SP_R_PARTIAL 2      /* SP_SCAN_DONE: bytes of a trailing incomplete record */
#define SP_R_NEEDED 3       /* SP_SCAN_DONE: bytes missing from it */
#define SP_R_ERROR 4        /* SP_SCAN_ERROR: an SP_SCAN_* error code */
#define SP_R_ERROR_OFFSET 5
#define SP_R_ERROR_VALUE 6

/* Return values of sp_scan. */
#define SP_SCAN_DONE 0
#define SP_SCAN_FULL 1
#define SP_SCAN_ERROR 2

/* Return values of sp_parse_client_hello. */
#define SP_HELLO_OK 0
#define SP_HELLO_NEED_DATA 1
#define SP_HELLO_RECORD_ERROR 2
#define SP_HELLO_ERROR 3
#define SP_HELLO_NEED_SCRATCH 4

/* Extension types kept in struct sp_hello itself; a ClientHello with more
 * asks sp_hello_extension_types for the rest. */
#define SP_INLINE_EXTENSIONS 64

/* Offsets are into the parsed data: the caller's buffer, or the caller's
 * scratch buffer when gathered is 1.  An absent field has offset -1. */
struct sp_hello {
    int64_t needed;          /* NEED_DATA: more bytes; NEED_SCRATCH: scratch size */
    int64_t error;           /* an SP_SCAN_* or SP_HELLO_* code */
    int64_t error_offset;    /* record errors: offset of the bad header */
    int64_t error_value;
    int64_t gathered;
    int64_t legacy_version;
    int64_t record_version;
    int64_t length;          /* handshake body length */
    int64_t end;             /* offset just past the last record */
    int64_t body;            /* offset of the handshake body */
    int64_t random;
    int64_t session_id;
    int64_t session_id_length;
    int64_t cipher_suites;
    int64_t cipher_suites_length;     /* in bytes */
    int64_t compression;
    int64_t compression_length;
    int64_t extensions;               /* first extension header, -1 if none */
    int64_t extensions_end;
    int64_t extension_count;
    int64_t server_name;
    int64_t server_name_length;
    int64_t alpn;                     /* protocol_name_list contents */
    int64_t alpn_length;
    int64_t supported_versions;
    int64_t supported_versions_length;   /* in bytes */
    int64_t supported_groups;
    int64_t supported_groups_length;
    int64_t signature_algorithms;
    int64_t signature_algorithms_length;
    uint16_t extension_types[64];     /* the first SP_INLINE_EXTENSIONS types */
};

const char *sp_version(void);

/* out holds 4 * capacity + SP_SCAN_SUMMARY int64s: up to capacity records
 * as [content_type, version, offset, length], then the summary. */
int sp_scan(const uint8_t *buf, int64_t size, int64_t start, int64_t max_length,
            int64_t *out, int64_t capacity);

int sp_parse_client_hello(const uint8_t *buf, int64_t size, uint8_t *scratch,
                          int64_t scratch_size, struct sp_hello *hello);

int64_t sp_hello_extension_types(const uint8_t *data, const struct sp_hello *hello,
                                 uint16_t *out, int64_t capacity);
