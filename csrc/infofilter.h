/* The pyOpenSSL backend's info callback, filtered in C.
 *
 * OpenSSL calls a context's info callback at every handshake state change,
 * about fifteen times a side, and the backend wants only alerts.  A Python
 * callback costs a GIL round trip and a frame each time (3% of a pyOpenSSL
 * handshake, measured); this filter stays in C and calls into Python
 * (sp_on_alert, defined by securepair/pyopenssl_config.py) for alerts alone.
 *
 * Read twice, like framer.h: by the C compiler and by cffi as the cdef.
 * The SSL pointer is passed on untouched, so no OpenSSL header is needed.
 */

/* OpenSSL's SSL_CB_ALERT (0x4000), stable since SSLeay. */
#define SP_CB_ALERT 16384

void sp_info_filter(const void *ssl, int where, int ret);
