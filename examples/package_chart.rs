//! Packages a chart directory as `helm package` does (used by the packaging equivalence
//! tests): `package_chart DIR OUTDIR [--allow-outside-symlinks] [--walk-root DIR]
//! [--mtime SECONDS]`. Writes OUTDIR/<name>-<version>.tgz and prints its path; on an error,
//! prints it on stderr and exits 1.

use std::path::PathBuf;

use chartroom::publish::package::{PackageOptions, package_chart};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut opts = PackageOptions::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--allow-outside-symlinks" => opts.allow_outside_symlinks = true,
            "--walk-root" => opts.walk_root = PathBuf::from(args.next().unwrap_or_default()),
            "--mtime" => opts.mtime = args.next().and_then(|v| v.parse().ok()),
            _ => pos.push(PathBuf::from(a)),
        }
    }
    let [dir, out] = pos.as_slice() else {
        eprintln!(
            "usage: package_chart DIR OUTDIR [--allow-outside-symlinks] [--walk-root DIR] \
             [--mtime SECONDS]"
        );
        std::process::exit(2);
    };
    match package_chart(dir, &opts) {
        Ok(p) => {
            let path = out.join(&p.file_name);
            if let Err(e) = std::fs::write(&path, &p.bytes) {
                eprintln!("{}: {e}", path.display());
                std::process::exit(1);
            }
            println!("{}", path.display());
        }
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    }
}
