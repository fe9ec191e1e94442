//! Process figures read from `/proc` when `/metrics` is scraped (no thread of their own):
//! resident memory, open file descriptors and their limit, CPU time, start time, threads.
//! Names are the usual `process_*` ones of Prometheus client libraries.

/// What could be read; a figure that could not be read is `None` and not exported.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Reads the figures of this process.
pub fn read() -> ProcessStats {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let mut stats = stat
        .as_deref()
        .map(|s| parse_stat(s, ticks as f64, page.max(0) as u64, boot))
        .unwrap_or_default();
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
    {
        stats.max_fds = Some(lim.rlim_cur);
    }
    stats
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Parses `/proc/self/stat` (proc(5)): the fields after the command name in parentheses,
/// which may itself hold spaces and parentheses.
fn parse_stat(stat: &str, ticks: f64, page: u64, boot: Option<u64>) -> ProcessStats {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return ProcessStats::default();
    };
    // rest[0] is field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks_ok = ticks > 0.0;
    let cpu = match (field(14), field(15)) {
        (Some(u), Some(s)) if ticks_ok => Some((u + s) as f64 / ticks),
        _ => None,
    };
    let start = match (field(22), boot) {
        (Some(st), Some(b)) if ticks_ok => Some(b as f64 + st as f64 / ticks),
        _ => None,
    };
    ProcessStats {
        resident_bytes: field(24).map(|p| p.saturating_mul(page)),
        virtual_bytes: field(23),
        cpu_seconds: cpu,
        start_time_seconds: start,
        threads: field(20),
        open_fds: None,
        max_fds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "1234 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 1000 8192000 300 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096, Some(1_700_000_000));
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(s.virtual_bytes, Some(8_192_000));
        assert_eq!(s.resident_bytes, Some(300 * 4096));
        assert_eq!(
            parse_stat("garbage", 100.0, 4096, None),
            ProcessStats::default()
        );
        assert_eq!(boot_time("cpu 1 2\nbtime 42\n"), Some(42));
    }

    #[test]
    fn reads_this_process() {
        let s = read();
        assert!(s.resident_bytes.unwrap_or(0) > 0, "{s:?}");
        assert!(s.open_fds.unwrap_or(0) > 0, "{s:?}");
        assert!(s.start_time_seconds.unwrap_or(0.0) > 1.0e9, "{s:?}");
    }
}
