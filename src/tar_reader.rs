//! A streaming reader of tar archives (ustar, GNU and PAX) that checks every size before it
//! reads or allocates anything. The `tar` crate reads GNU long names and PAX records into
//! memory whatever their size; here every entry, extension headers included, is held to a
//! per-entry limit, and the whole stream (headers, data and padding) to a total limit.
//!
//! Entries are interpreted as Go's `archive/tar` (and so Helm) does: a PAX `path` overrides
//! a GNU long name, which overrides the ustar `prefix/name`; a PAX `size` overrides the header's
//! size; links, directories, devices and FIFOs carry no data whatever their size field says;
//! GNU sparse entries and global PAX headers are skipped. The archive ends at the first
//! all-zero header block (or at the end of the stream between two entries).

use std::io::Read;

const BLOCK: usize = 512;

/// What a limit applies to, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A file (or other entry) of the archive, by its path.
    Entry(String),
    /// An extension header: GNU long name (`L`) or long link (`K`), PAX record (`x`, `g`).
    Extension(char),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Entry(path) => write!(f, "file {path:?}"),
            Subject::Extension('L') => f.write_str("tar extension header (GNU long name)"),
            Subject::Extension('K') => f.write_str("tar extension header (GNU long link name)"),
            Subject::Extension('x') => f.write_str("tar extension header (PAX records)"),
            Subject::Extension('g') => f.write_str("tar extension header (PAX global records)"),
            Subject::Extension(c) => write!(f, "tar extension header ({c:?})"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    /// The stream under the archive failed (a damaged gzip stream, typically).
    #[error("{0}")]
    Io(String),
    #[error("archive ends in the middle of an entry")]
    Truncated,
    #[error("bad header checksum")]
    Checksum,
    #[error("bad numeric field {0:?} in header")]
    BadNumber(&'static str),
    #[error("bad PAX record")]
    BadPax,
    /// An entry (or extension header) is larger than the per-entry limit.
    #[error("{subject} is larger than {limit} bytes")]
    EntryTooLarge { subject: Subject, limit: u64 },
    /// The archive (every byte of the tar stream) is larger than the total limit.
    #[error("archive is larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The kind of an entry, as far as a chart reader cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Other,
}

/// One entry: its path, kind and data size (the data is read with [`TarReader::read_data`] or
/// skipped by the next [`TarReader::next_entry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub size: u64,
}

pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    consumed: u64,
    max_entry: u64,
    max_total: u64,
    /// Data (plus padding) of the current entry not read yet.
    pending: u64,
    done: bool,
}

impl<R: Read> TarReader<R> {
    /// A reader refusing any entry or extension header over `max_entry` bytes and any archive
    /// over `max_total` bytes (headers and padding included).
    pub fn new(inner: R, max_entry: u64, max_total: u64) -> TarReader<R> {
        TarReader {
            inner,
            consumed: 0,
            max_entry,
            max_total,
            pending: 0,
            done: false,
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` when the stream ends before the first
    /// byte, `Truncated` when it ends later.
    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> Result<bool, TarError> {
        if self.consumed.saturating_add(buf.len() as u64) > self.max_total {
            return Err(TarError::TooLarge {
                limit: self.max_total,
            });
        }
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e.to_string())),
            }
        }
        self.consumed += got as u64;
        match got {
            0 => Ok(false),
            n if n == buf.len() => Ok(true),
            _ => Err(TarError::Truncated),
        }
    }

    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        self.read_exact_or_eof(block)
    }

    /// Discards `n` bytes.
    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        if self.consumed.saturating_add(n) > self.max_total {
            return Err(TarError::TooLarge {
                limit: self.max_total,
            });
        }
        let mut buf = [0u8; 8192];
        while n > 0 {
            let step = n.min(buf.len() as u64) as usize;
            if !self.read_exact_or_eof(&mut buf[..step])? {
                return Err(TarError::Truncated);
            }
            n -= step as u64;
        }
        Ok(())
    }

    /// Checks a data size against the limits before anything of it is read.
    fn check_size(&self, size: u64, subject: impl FnOnce() -> Subject) -> Result<(), TarError> {
        if size > self.max_entry {
            return Err(TarError::EntryTooLarge {
                subject: subject(),
                limit: self.max_entry,
            });
        }
        if self.consumed.saturating_add(padded(size)) > self.max_total {
            return Err(TarError::TooLarge {
                limit: self.max_total,
            });
        }
        Ok(())
    }

    /// Reads the data of an extension header (size already checked) and its padding.
    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let mut data = vec![0u8; size as usize];
        if !self.read_exact_or_eof(&mut data)? && size > 0 {
            return Err(TarError::Truncated);
        }
        self.skip(padded(size) - size)?;
        Ok(data)
    }

    /// The next file or other entry; extension headers are applied to the entry they precede.
    /// `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        let pending = std::mem::take(&mut self.pending);
        self.skip(pending)?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        let mut block = [0u8; BLOCK];
        loop {
            if !self.read_block(&mut block)? {
                // The end of the stream between entries ends the archive, as for Go; but not
                // after an extension header that announced an entry.
                if long_name.is_some() || pax_path.is_some() || pax_size.is_some() {
                    return Err(TarError::Truncated);
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            check_checksum(&block)?;
            let typeflag = block[156];
            let header_size = parse_number(&block[124..136]).ok_or(TarError::BadNumber("size"))?;
            match typeflag {
                b'L' | b'K' | b'x' | b'g' => {
                    let c = char::from(typeflag);
                    self.check_size(header_size, || Subject::Extension(c))?;
                    if typeflag == b'g' {
                        // Global records change nothing a chart reader uses: skipped.
                        self.skip(padded(header_size))?;
                        continue;
                    }
                    let data = self.read_extension(header_size)?;
                    match typeflag {
                        b'L' => long_name = Some(until_nul(&data).to_vec()),
                        b'K' => {}
                        _ => {
                            for (key, value) in parse_pax(&data)? {
                                match key {
                                    b"path" => pax_path = Some(value.to_vec()),
                                    b"size" => {
                                        let text = std::str::from_utf8(value)
                                            .map_err(|_| TarError::BadPax)?;
                                        pax_size =
                                            Some(text.parse().map_err(|_| TarError::BadPax)?);
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let path_bytes = match (pax_path, long_name) {
                (Some(p), _) => p,
                (None, Some(l)) => l,
                (None, None) => header_path(&block),
            };
            let path = String::from_utf8_lossy(&path_bytes).into_owned();
            let declared = pax_size.unwrap_or(header_size);
            let kind = match typeflag {
                b'0' | b'7' => Kind::File,
                0 if !path.ends_with('/') => Kind::File,
                _ => Kind::Other,
            };
            // Entries that carry no data, whatever their size field says (as Go reads them).
            let size = match typeflag {
                b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => 0,
                0 if path.ends_with('/') => 0,
                _ => declared,
            };
            if typeflag == b'S' {
                // GNU sparse: possibly followed by extension blocks of the sparse map.
                let mut extended = block[482] != 0;
                while extended {
                    if !self.read_block(&mut block)? {
                        return Err(TarError::Truncated);
                    }
                    extended = block[504] != 0;
                }
            }
            self.check_size(size, || Subject::Entry(path.clone()))?;
            self.pending = padded(size);
            return Ok(Some(Entry { path, kind, size }));
        }
    }

    /// Reads the current entry's data (its size was checked by `next_entry`).
    pub fn read_data(&mut self, entry: &Entry) -> Result<Vec<u8>, TarError> {
        if self.pending != padded(entry.size) {
            return Err(TarError::Io("entry data already read".into()));
        }
        self.pending = 0;
        self.read_extension(entry.size)
    }
}

/// `n` rounded up to whole blocks.
fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

fn until_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// `prefix/name` for POSIX ustar headers, else `name`.
fn header_path(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = until_nul(&block[0..100]);
    let ustar = &block[257..263] == b"ustar\0";
    let prefix = if ustar {
        until_nul(&block[345..500])
    } else {
        &[]
    };
    if prefix.is_empty() {
        name.to_vec()
    } else {
        let mut p = prefix.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// The checksum is the sum of the header's bytes with the checksum field as spaces, unsigned
/// or (some old writers) signed.
fn check_checksum(block: &[u8; BLOCK]) -> Result<(), TarError> {
    let stored = parse_number(&block[148..156]).ok_or(TarError::Checksum)?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(TarError::Checksum)
    }
}

/// A numeric header field: octal text (leading spaces or NULs, ended by a space or NUL), or
/// GNU base-256 (first byte's high bit set; negative values refused).
fn parse_number(field: &[u8]) -> Option<u64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                return None; // negative
            }
            let mut v: u64 = u64::from(first & 0x3f);
            for &b in &field[1..] {
                v = v.checked_mul(256)?.checked_add(u64::from(b))?;
            }
            return Some(v);
        }
    }
    let text = field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| b != b' ' && b != 0);
    // An all-blank field is zero (Go reads it so).
    let mut v: u64 = 0;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// One PAX record: key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// PAX records: `<length> <key>=<value>\n`, the length counting the whole record.
fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, TarError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or(TarError::BadPax)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(TarError::BadPax)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(TarError::BadPax);
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TarError::BadPax)?;
        out.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..108].copy_from_slice(b"0000644\0");
        b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        set_checksum(&mut b);
        b
    }

    fn set_checksum(b: &mut [u8; BLOCK]) {
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn entry(out: &mut Vec<u8>, name: &str, typeflag: u8, data: &[u8]) {
        out.extend_from_slice(&header(name, typeflag, data.len() as u64));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }

    fn all(data: &[u8], max_entry: u64, max_total: u64) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
        let mut r = TarReader::new(data, max_entry, max_total);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let d = r.read_data(&e)?;
            out.push((e, d));
        }
        Ok(out)
    }

    #[test]
    fn reads_what_the_tar_crate_writes() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("c/templates/{}.yaml", "x".repeat(150));
        for (path, body) in [
            ("c/Chart.yaml", "name: c\n"),
            (long.as_str(), "kind: Pod\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, body.as_bytes()).unwrap();
        }
        let data = b.into_inner().unwrap();
        let got = all(&data, 1 << 20, 1 << 20).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.path, "c/Chart.yaml");
        assert_eq!(got[0].1, b"name: c\n");
        assert_eq!(got[1].0.path, long);
        assert_eq!(got[1].1, b"kind: Pod\n");
    }

    #[test]
    fn pax_path_and_size_and_prefix() {
        let mut data = Vec::new();
        let rec = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut n = body.len() + 1;
            while format!("{n}{body}").len() != n {
                n += 1;
            }
            format!("{n}{body}")
        };
        let pax = format!("{}{}", rec("path", "c/from-pax"), rec("size", "3"));
        entry(&mut data, "PaxHeaders/x", b'x', pax.as_bytes());
        // The header says 0 bytes; the PAX size (3) wins.
        data.extend_from_slice(&header("c/ignored", b'0', 0));
        data.extend_from_slice(b"abc");
        data.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
        let mut h = header("name", b'0', 1);
        h[345..351].copy_from_slice(b"c/pre/");
        set_checksum(&mut h);
        data.extend_from_slice(&h);
        data.extend_from_slice(b"z");
        data.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
        data.extend_from_slice(&[0; 1024]);
        let got = all(&data, 1 << 20, 1 << 20).unwrap();
        assert_eq!(got[0].0.path, "c/from-pax");
        assert_eq!(got[0].1, b"abc");
        assert_eq!(got[1].0.path, "c/pre//name");
    }

    #[test]
    fn extension_headers_count_against_the_entry_limit() {
        for t in [b'L', b'K', b'x', b'g'] {
            let mut data = Vec::new();
            data.extend_from_slice(&header("././@LongLink", t, 250 << 20));
            let err = all(&data, 5 << 20, 100 << 20).unwrap_err();
            assert_eq!(
                err,
                TarError::EntryTooLarge {
                    subject: Subject::Extension(char::from(t)),
                    limit: 5 << 20
                }
            );
        }
        // Within the entry limit but over the total.
        let mut data = Vec::new();
        data.extend_from_slice(&header("a/b", b'0', 4096));
        assert_eq!(
            all(&data, 1 << 20, 2048).unwrap_err(),
            TarError::TooLarge { limit: 2048 }
        );
    }

    #[test]
    fn numbers_and_checksums() {
        assert_eq!(parse_number(b"00000000012\0"), Some(10));
        assert_eq!(parse_number(b"     12 \0"), Some(10));
        assert_eq!(parse_number(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_number(b"0008\0"), None);
        assert_eq!(
            parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_number(&[0xff; 12]), None);
        assert_eq!(
            parse_number(&[
                0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            None
        );
        let mut h = header("a/b", b'0', 0);
        h[0] = b'x';
        assert_eq!(all(&h, 1, 1 << 20).unwrap_err(), TarError::Checksum);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// Any byte string: entries or an error, never a panic, and never an allocation over
        /// the entry limit (every entry returned is within it, and so is all the reader read).
        #[test]
        fn any_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let mut r = TarReader::new(&data[..], 700, 3000);
            while let Ok(Some(e)) = r.next_entry() {
                proptest::prop_assert!(e.size <= 700);
                match r.read_data(&e) {
                    Ok(d) => proptest::prop_assert!(d.len() as u64 <= 700),
                    Err(_) => break,
                }
            }
            proptest::prop_assert!(r.consumed <= 3000);
        }

        /// Generated archives of random header types and sizes (valid checksums, so that the
        /// sizes are acted on): the reader never reads past the total limit nor returns an
        /// entry over the entry limit, whatever the declared sizes.
        #[test]
        fn generated_headers(parts in proptest::collection::vec(
            (proptest::sample::select(vec![b'0', 0, b'1', b'5', b'7', b'L', b'K', b'x', b'g', b'S', b'Z']),
             proptest::prop_oneof![0u64..2000, proptest::prelude::Just(250u64 << 20), proptest::prelude::Just(u64::MAX >> 4)],
             0usize..1500),
            0..8)) {
            let mut data = Vec::new();
            for (t, size, real) in parts {
                let mut h = header("c/f", t, size.min(0o77777777777));
                if size > 0o77777777777 {
                    h[124] = 0x80;
                    h[125..136].copy_from_slice(&(size.to_be_bytes()[..]).iter().copied().cycle().take(11).collect::<Vec<u8>>());
                    set_checksum(&mut h);
                }
                data.extend_from_slice(&h);
                data.extend(std::iter::repeat_n(b'9', real));
                data.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
            }
            let mut r = TarReader::new(&data[..], 1024, 4096);
            while let Ok(Some(e)) = r.next_entry() {
                proptest::prop_assert!(e.size <= 1024);
                if r.read_data(&e).is_err() {
                    break;
                }
            }
            proptest::prop_assert!(r.consumed <= 4096);
        }
    }
}
