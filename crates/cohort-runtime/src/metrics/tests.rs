//! Reading `/proc`, and the series a scrape shows.

use prometheus_client::registry::Registry;

use super::{Process, register_pool, register_process};

const STAT: &str = "4242 (cohort (x) y) S 1 4242 4242 0 -1 4194560 2710 0 0 0 250 75 0 0 20 0 9 0 \
                    123400 1251282944 5120 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0";
const STATUS: &str =
    "Name:\tcohort\nVmPeak:\t 1300000 kB\nVmSize:\t 1221956 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63422                63422                processes\n\
                      Max open files            1024                 524288               files\n";
const BOOT: &str = "cpu  1 2 3\nbtime 1764700000\nprocesses 100\n";

#[test]
fn proc_texts_are_read_past_a_command_name_with_parentheses() {
    let p = Process::parse(STAT, STATUS, LIMITS, BOOT, 17).unwrap();
    assert_eq!(
        p,
        Process {
            cpu_seconds: 3.25,
            resident_bytes: 20480 * 1024,
            virtual_bytes: 1221956 * 1024,
            open_fds: 17,
            max_fds: Some(1024),
            threads: 9,
            start_time_seconds: 1764700000.0 + 1234.0,
        }
    );
    let unlimited = LIMITS.replace("1024                 524288", "unlimited            unlimited");
    assert_eq!(Process::parse(STAT, STATUS, &unlimited, BOOT, 17).unwrap().max_fds, None);
    assert_eq!(Process::parse("4242 (cohort) S 1", STATUS, LIMITS, BOOT, 17), None, "a short stat line");
}

/// The value of an unlabelled series in an OpenMetrics text.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_scrape_shows_build_info_this_process_and_the_pool() {
    let mut registry = Registry::default();
    register_process(&mut registry, "cohort-test");
    // Nothing listens on port 1: the pool opens no connection, and says so.
    let pool = cohort_db::connect(
        "postgres://postgres@127.0.0.1:1/cohort",
        &cohort_db::PoolOptions { max_connections: 3, ..Default::default() },
    )
    .unwrap();
    register_pool(&mut registry, pool);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

    let build = format!(
        "cohort_build_info{{service=\"cohort-test\",version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        super::COMMIT
    );
    assert!(text.contains(&build), "{build} in\n{text}");
    assert!(text.contains("# TYPE process_cpu_seconds counter"), "{text}");
    assert!(value(&text, "process_cpu_seconds_total") > 0.0);
    let rss = value(&text, "process_resident_memory_bytes");
    assert!(rss > 1e6 && rss <= value(&text, "process_virtual_memory_bytes"), "{text}");
    let (open, max) = (value(&text, "process_open_fds"), value(&text, "process_max_fds"));
    assert!(open >= 3.0 && open < max, "{text}");
    assert!(value(&text, "process_threads") >= 1.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = value(&text, "process_start_time_seconds");
    // Started before now, and within the hour (the test process is young).
    assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");

    assert_eq!(value(&text, "cohort_db_pool_max_connections"), 3.0);
    assert_eq!(value(&text, "cohort_db_pool_connections"), 0.0);
    assert_eq!(value(&text, "cohort_db_pool_available_connections"), 0.0);
    assert_eq!(value(&text, "cohort_db_pool_waiting"), 0.0);
}
