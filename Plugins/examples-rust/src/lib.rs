//! The example Rust plugin "examples-rust": JSON jobs (`run` + `complete`) and typed jobs (plain
//! C-ABI functions the host calls through libffi). Built by `make build` when cargo is present
//! and installed as `<plugins root>/examples/rust/libexamples_rust.so`.

mod pq_plugin;

use core::ffi::{c_char, c_int, c_void};
use pq_plugin::{PqCall, PqJobDef, PqPlugin, PQ_ABI_VERSION, PQ_LOG_INFO};
use std::ffi::{CStr, CString};

/// NUL-terminated text for the C side.
macro_rules! c {
    ($text:expr) => {
        concat!($text, "\0").as_ptr() as *const c_char
    };
}

/// Ends a call: `ok` with JSON, or failed with a message.
unsafe fn complete(call: *const PqCall, ok: bool, text: &str) {
    let text = CString::new(text).unwrap_or_else(|_| CString::new("result held a NUL byte").unwrap());
    if let Some(complete) = (*call).complete {
        complete(call, ok as c_int, text.as_ptr());
    }
}

/// `rust.echo`: returns its kwargs (already a JSON object), after a log line.
unsafe extern "C" fn echo_run(call: *const PqCall) {
    if let Some(log) = (*call).log {
        log(call, PQ_LOG_INFO, c!("rust.echo running"));
    }
    let args = CStr::from_ptr((*call).args_json).to_string_lossy().into_owned();
    complete(call, true, &args);
}

/// `rust.fail`: always fails, naming its attempt.
unsafe extern "C" fn fail_run(call: *const PqCall) {
    complete(call, false, &format!("rust.fail failed on purpose (attempt {})", (*call).attempt));
}

/// `rust.add`: a typed job, `(a:i64,b:i64)->i64`, wrapping on overflow (a panic would abort the host).
extern "C" fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// `rust.hello`: a typed job, `(name:str)->str`; the host frees the result with `free_string`.
unsafe extern "C" fn hello(name: *const c_char) -> *mut c_char {
    let name = if name.is_null() { "".into() } else { CStr::from_ptr(name).to_string_lossy() };
    CString::new(format!("hello, {}", name)).map(CString::into_raw).unwrap_or(core::ptr::null_mut())
}

unsafe extern "C" fn free_string(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

const NONE: *const c_char = core::ptr::null();

static JOBS: [PqJobDef; 4] = [
    PqJobDef {
        name: c!("rust.echo"),
        doc: c!("Returns its arguments."),
        options_json: NONE,
        run: Some(echo_run),
        cancel: None,
        function: core::ptr::null(),
        signature: NONE,
    },
    PqJobDef {
        name: c!("rust.fail"),
        doc: c!("Always fails."),
        options_json: c!("{\"max_retries\": 0}"),
        run: Some(fail_run),
        cancel: None,
        function: core::ptr::null(),
        signature: NONE,
    },
    PqJobDef {
        name: c!("rust.add"),
        doc: c!("Adds two 64-bit integers (typed job)."),
        options_json: NONE,
        run: None,
        cancel: None,
        function: add as *const c_void,
        signature: c!("(a:i64,b:i64)->i64"),
    },
    PqJobDef {
        name: c!("rust.hello"),
        doc: c!("Greets `name` (typed job)."),
        options_json: NONE,
        run: None,
        cancel: None,
        function: hello as *const c_void,
        signature: c!("(name:str)->str"),
    },
];

static PLUGIN: PqPlugin = PqPlugin {
    abi_version: PQ_ABI_VERSION,
    struct_size: core::mem::size_of::<PqPlugin>() as u32,
    name: c!("examples-rust"),
    version: c!("1.0.0"),
    toolchain: c!("c"),
    job_count: 4,
    jobs: &JOBS as *const [PqJobDef; 4] as *const PqJobDef,
    free_string: Some(free_string),
};

/// The plugin's one exported symbol.
#[no_mangle]
pub extern "C" fn pq_plugin_entry(host_abi_version: u32) -> *const PqPlugin {
    if host_abi_version == PQ_ABI_VERSION {
        &PLUGIN
    } else {
        core::ptr::null()
    }
}
