//! The store (spec §11.1): `store/<workload>/<timestamp>/` per test, with the `latest` and
//! `current` links replaced atomically at start.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Creates the directory of a new test (and its `node-logs/`) and points the links at it.
pub fn create(store: &Path, workload: &str) -> io::Result<PathBuf> {
    let stamp = timestamp(SystemTime::now());
    let mut dir = store.join(workload).join(&stamp);
    let mut n = 1;
    while dir.exists() {
        dir = store.join(workload).join(format!("{stamp}-{n}"));
        n += 1;
    }
    std::fs::create_dir_all(dir.join("node-logs"))?;
    let rel_from_store = Path::new(workload).join(dir.file_name().expect("named"));
    relink(&store.join("latest"), &rel_from_store)?;
    relink(&store.join("current"), &rel_from_store)?;
    relink(
        &store.join(workload).join("latest"),
        Path::new(dir.file_name().expect("named")),
    )?;
    Ok(dir)
}

/// Replaces the symlink `link` with one to `target`, atomically (rename over the old one).
fn relink(link: &Path, target: &Path) -> io::Result<()> {
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// `YYYYMMDDTHHMMSS.mmm+0000` in UTC.
///
/// Hand-written (days-to-civil conversion) to avoid a date-time dependency for one format.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}+0000",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_798_096_362_345);
        assert_eq!(timestamp(t), "20261224T071242.345+0000");
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000+0000");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000.000+0000"
        );
    }

    #[test]
    fn links_point_at_the_newest_test() {
        let store = tempfile::tempdir().unwrap();
        let a = create(store.path(), "echo").unwrap();
        let b = create(store.path(), "echo").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            std::fs::canonicalize(store.path().join("latest")).unwrap(),
            std::fs::canonicalize(&b).unwrap()
        );
        assert_eq!(
            std::fs::canonicalize(store.path().join("echo/latest")).unwrap(),
            std::fs::canonicalize(&b).unwrap()
        );
        assert!(b.join("node-logs").is_dir());
    }
}
