//! Python tools the tests check against (moto, jsonschema), each pinned, installed into a venv
//! under the target directory on first use. A test that cannot get one fails, saying why.
//! Shared by sensor-cloudwatch's tests (`#[path]`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// `target/` of this workspace (or CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/<name>.
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .expect("target directory")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{cmd:?}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The venv `target/<name>` with `requirement` installed (once; a changed requirement
/// reinstalls); returns its directory.
pub fn venv(name: &str, requirement: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = target_dir().join(name);
    let py = venv.join("bin/python");
    let marker = venv.join(".installed");
    if py.is_file() && std::fs::read_to_string(&marker).is_ok_and(|m| m == requirement) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    eprintln!("installing {requirement} into {} (once)", venv.display());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let install = || -> Result<(), String> {
        // A venv with pip; without python3-venv's ensurepip, a bare venv that the system pip
        // (23+: --python) installs into.
        let with_pip = run(Command::new(&python).args(["-m", "venv"]).arg(&venv));
        match with_pip {
            Ok(()) => run(Command::new(&py).args(["-m", "pip", "install", "--quiet", requirement])),
            Err(first) => {
                let _ = std::fs::remove_dir_all(&venv);
                run(Command::new(&python)
                    .args(["-m", "venv", "--without-pip"])
                    .arg(&venv))
                .and_then(|_| {
                    run(Command::new(&python)
                        .args(["-m", "pip", "--python"])
                        .arg(&py)
                        .args(["install", "--quiet", requirement]))
                })
                .map_err(|second| format!("{first}\n--- then ---\n{second}"))
            }
        }
    };
    if let Err(e) = install() {
        panic!(
            "cannot install {requirement}, which these tests check against: {e}\n\
             They need python3 (3.9+) with venv or pip, and PyPI. On Debian: \
             apt-get install python3-venv python3-pip"
        );
    }
    std::fs::write(&marker, requirement).expect("writing the venv marker");
    venv
}
