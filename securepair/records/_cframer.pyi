# Type stub for the cffi extension built from csrc/framer.h and
# csrc/infofilter.h.  The functions and constants mirror the headers; keep
# them in step.

from typing import Final

from _cffi_backend import FFI

_CData = FFI.CData

class _Lib:
    SP_SCAN_OK: Final[int]
    SP_SCAN_UNKNOWN_CONTENT_TYPE: Final[int]
    SP_SCAN_BAD_VERSION: Final[int]
    SP_SCAN_RECORD_OVERFLOW: Final[int]
    SP_SCAN_EMPTY_RECORD: Final[int]
    SP_HELLO_NOT_HANDSHAKE: Final[int]
    SP_HELLO_NOT_CLIENT_HELLO: Final[int]
    SP_HELLO_TOO_LONG: Final[int]
    SP_HELLO_INTERLEAVED: Final[int]
    SP_HELLO_OVERRUN: Final[int]
    SP_HELLO_MALFORMED: Final[int]
    SP_HELLO_DUPLICATE_EXTENSION: Final[int]
    SP_F_LEGACY_VERSION: Final[int]
    SP_F_RANDOM: Final[int]
    SP_F_SESSION_ID: Final[int]
    SP_F_CIPHER_SUITES: Final[int]
    SP_F_COMPRESSION: Final[int]
    SP_F_EXTENSIONS: Final[int]
    SP_F_EXTENSION: Final[int]
    SP_F_SERVER_NAME: Final[int]
    SP_F_ALPN: Final[int]
    SP_F_SUPPORTED_VERSIONS: Final[int]
    SP_F_SUPPORTED_GROUPS: Final[int]
    SP_F_SIGNATURE_ALGORITHMS: Final[int]
    SP_F_MESSAGE: Final[int]
    SP_HEADER_LENGTH: Final[int]
    SP_MAX_PLAINTEXT: Final[int]
    SP_MAX_CLIENT_HELLO_LENGTH: Final[int]
    SP_SCAN_SUMMARY: Final[int]
    SP_R_POS: Final[int]
    SP_R_COUNT: Final[int]
    SP_R_PARTIAL: Final[int]
    SP_R_NEEDED: Final[int]
    SP_R_ERROR: Final[int]
    SP_R_ERROR_OFFSET: Final[int]
    SP_R_ERROR_VALUE: Final[int]
    SP_SCAN_DONE: Final[int]
    SP_SCAN_FULL: Final[int]
    SP_SCAN_ERROR: Final[int]
    SP_HELLO_OK: Final[int]
    SP_HELLO_NEED_DATA: Final[int]
    SP_HELLO_RECORD_ERROR: Final[int]
    SP_HELLO_ERROR: Final[int]
    SP_HELLO_NEED_SCRATCH: Final[int]
    SP_INLINE_EXTENSIONS: Final[int]
    def sp_version(self) -> _CData: ...
    def sp_scan(
        self,
        buf: _CData,
        size: int,
        start: int,
        max_length: int,
        out: _CData,
        capacity: int,
        /,
    ) -> int: ...
    def sp_parse_client_hello(
        self, buf: _CData, size: int, scratch: _CData, scratch_size: int, hello: _CData, /
    ) -> int: ...
    def sp_hello_extension_types(
        self, data: _CData, hello: _CData, out: _CData, capacity: int, /
    ) -> int: ...
    SP_CB_ALERT: Final[int]
    def sp_info_filter(self, ssl: _CData, where: int, ret: int, /) -> None: ...

ffi: FFI
lib: _Lib
