//! Writing the package: the entries Helm's `chartutil.Save` writes, in its order, as a
//! deterministic gzip-compressed tar.

use super::PackageError;
use super::load::Chart;

fn entries(
    chart: &Chart,
    prefix: &str,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), PackageError> {
    let base = if prefix.is_empty() {
        chart.name.clone()
    } else {
        format!("{prefix}/{}", chart.name)
    };
    out.push((format!("{base}/Chart.yaml"), chart.chart_yaml()?));
    if let Some(lock) = chart.lock_yaml()? {
        out.push((format!("{base}/Chart.lock"), lock));
    }
    if let Some(v) = &chart.values {
        out.push((format!("{base}/values.yaml"), v.clone()));
    }
    if let Some(s) = &chart.schema {
        out.push((format!("{base}/values.schema.json"), s.clone()));
    }
    for f in chart.templates.iter().chain(&chart.files) {
        out.push((format!("{base}/{}", f.name), f.data.clone()));
    }
    for dep in &chart.deps {
        entries(dep, &format!("{base}/charts"), out)?;
    }
    Ok(())
}

/// The package's bytes: every entry a regular file, mode 0644, uid/gid 0, no owner names,
/// mtime `mtime`; USTAR headers (a name too long for them gets a GNU long-name entry); gzip
/// with no timestamp, no file name, OS "unknown" (255), default compression.
pub fn write(chart: &Chart, mtime: u64) -> Result<Vec<u8>, PackageError> {
    let mut list = Vec::new();
    entries(chart, "", &mut list)?;
    let err = |e: std::io::Error| PackageError::Write(e.to_string());
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (name, data) in &list {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, name, data.as_slice())
            .map_err(|e| PackageError::Write(format!("{name}: {e}")))?;
    }
    let gz = tar.into_inner().map_err(err)?;
    gz.finish().map_err(err)
}
