//! Embeds the XDP object built by `cargo xtask build-ebpf` (or named by RDS_SENSOR_EBPF_OBJ).
//! Without one, an empty object is embedded: everything but live capture still builds and
//! tests, and `rds-sensor run` says how to build the object.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("sensor-ebpf.o");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let default = manifest.join("../sensor-ebpf/target/bpfel-unknown-none/release/sensor-ebpf");
    println!("cargo:rerun-if-env-changed=RDS_SENSOR_EBPF_OBJ");
    let src = env::var_os("RDS_SENSOR_EBPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-changed={}", src.display());
    match fs::read(&src) {
        Ok(bytes) => fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!("cargo:rustc-cfg=no_ebpf_object");
            fs::write(&out, []).unwrap();
        }
    }
    println!("cargo:rustc-check-cfg=cfg(no_ebpf_object)");
}
