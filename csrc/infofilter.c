/* See infofilter.h. */

#include "infofilter.h"

/* Defined by cffi's generated module (extern "Python+C" in the cdef, see
 * build_framer.py); it runs the Python function registered for it. */
void sp_on_alert(const void *ssl, int where, int ret);

void sp_info_filter(const void *ssl, int where, int ret)
{
    if (where & SP_CB_ALERT)
        sp_on_alert(ssl, where, ret);
}
