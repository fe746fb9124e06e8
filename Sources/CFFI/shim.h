/* libffi for the host's typed-job calls. The predefined ffi_type objects are C globals; Swift 6
 * treats imported mutable globals as shared state, so they are reached through these accessors. */
#include <ffi.h>

static inline ffi_type *pq_ffi_type_void(void) { return &ffi_type_void; }
static inline ffi_type *pq_ffi_type_uint8(void) { return &ffi_type_uint8; }
static inline ffi_type *pq_ffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *pq_ffi_type_uint32(void) { return &ffi_type_uint32; }
static inline ffi_type *pq_ffi_type_sint64(void) { return &ffi_type_sint64; }
static inline ffi_type *pq_ffi_type_uint64(void) { return &ffi_type_uint64; }
static inline ffi_type *pq_ffi_type_float(void) { return &ffi_type_float; }
static inline ffi_type *pq_ffi_type_double(void) { return &ffi_type_double; }
static inline ffi_type *pq_ffi_type_pointer(void) { return &ffi_type_pointer; }
