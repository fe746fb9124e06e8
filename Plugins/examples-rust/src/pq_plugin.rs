//! A hand-written mirror of pq_plugin.h, ABI version 1 (`pq header --print` shows the header,
//! whose comments are the contract). Later versions only append fields.
#![allow(dead_code)]

use core::ffi::{c_char, c_int, c_void};

pub const PQ_ABI_VERSION: u32 = 1;
pub const PQ_LOG_DEBUG: c_int = 0;
pub const PQ_LOG_INFO: c_int = 1;
pub const PQ_LOG_WARNING: c_int = 2;
pub const PQ_LOG_ERROR: c_int = 3;

/// One run of a JSON job; valid until `complete` has been called.
#[repr(C)]
pub struct PqCall {
    pub struct_size: u32,
    pub task_id: *const c_char,
    pub job_name: *const c_char,
    pub args_json: *const c_char,
    pub attempt: u32,
    pub host_data: *mut c_void,
    pub complete: Option<unsafe extern "C" fn(call: *const PqCall, ok: c_int, json_or_error: *const c_char)>,
    pub log: Option<unsafe extern "C" fn(call: *const PqCall, level: c_int, message: *const c_char)>,
    pub is_cancelled: Option<unsafe extern "C" fn(call: *const PqCall) -> c_int>,
    pub submit: Option<
        unsafe extern "C" fn(
            call: *const PqCall,
            job: *const c_char,
            args_json: *const c_char,
            id_out: *mut c_char,
            id_cap: usize,
        ) -> c_int,
    >,
}

/// A job: JSON (`run` set) or typed (`function` and `signature` set). C's field is `fn`.
#[repr(C)]
pub struct PqJobDef {
    pub name: *const c_char,
    pub doc: *const c_char,
    pub options_json: *const c_char,
    pub run: Option<unsafe extern "C" fn(call: *const PqCall)>,
    pub cancel: Option<unsafe extern "C" fn(call: *const PqCall)>,
    pub function: *const c_void,
    pub signature: *const c_char,
}

/// What `pq_plugin_entry` returns; it must stay valid while the library is loaded.
#[repr(C)]
pub struct PqPlugin {
    pub abi_version: u32,
    pub struct_size: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub toolchain: *const c_char,
    pub job_count: u32,
    pub jobs: *const PqJobDef,
    pub free_string: Option<unsafe extern "C" fn(s: *mut c_char)>,
}

// The definitions point at static, read-only data: sharing them between threads is safe.
unsafe impl Send for PqJobDef {}
unsafe impl Sync for PqJobDef {}
unsafe impl Send for PqPlugin {}
unsafe impl Sync for PqPlugin {}
