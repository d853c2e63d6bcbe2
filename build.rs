//! With the `python` feature: link libpython with an rpath to the directory it was found in,
//! so the binary loads the interpreter it was built against (not another libpython of the same
//! name on the system's library path), and record which interpreter that is.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "python")]
    python();
}

#[cfg(feature = "python")]
fn python() {
    pyo3_build_config::use_pyo3_cfgs();
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    let version = format!("{}.{}", config.version().major, config.version().minor);
    println!("cargo:rustc-env=TINE_PYTHON_VERSION={version}");
    println!(
        "cargo:rustc-env=TINE_PYTHON_EXECUTABLE={}",
        config.executable().unwrap_or("")
    );
    println!(
        "cargo:rustc-env=TINE_PYTHON_LIBDIR={}",
        config.lib_dir().unwrap_or("")
    );
    println!(
        "cargo:rustc-env=TINE_PYTHON_LIBRARY={}",
        config.lib_name().unwrap_or("")
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
