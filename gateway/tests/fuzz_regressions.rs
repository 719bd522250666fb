//! Inputs the fuzz targets (`fuzz/`, docs/RELIABILITY.md) found mishandled, kept as tests.
//! Frame and control-JSON findings become vectors in `spec/vectors/` instead.

use std::path::Path;

use vyx_gateway::file_config;

/// `config_yaml`: a heartbeat longer than WELCOME's `heartbeat_ms` can carry (2^31−1 ms) was
/// accepted, then sent wrapped or out of range, and every worker refused every WELCOME
/// (4005, retried for ever). The loader refuses it, with its place.
#[test]
fn a_heartbeat_longer_than_welcome_can_carry_is_refused_with_its_place() {
    let path = Path::new("/nonexistent/vyx.yaml");
    for text in [
        "timeouts:\n  heartbeat: 597h\n",
        "timeouts:\n  heartbeat: 2147483648ms\n",
        "timeouts:\n  heartbeat: 4294967296ms\n",
    ] {
        let err = file_config::parse(path, text)
            .err()
            .unwrap_or_else(|| panic!("accepted {text:?}"));
        assert_eq!((err.line, err.column), (2, 14), "{err}");
        assert!(err.message.contains("at most 2147483647ms"), "{err}");
    }
    let longest = file_config::parse(path, "timeouts:\n  heartbeat: 2147483647ms\n").unwrap();
    assert_eq!(longest.heartbeat.as_millis(), 2_147_483_647);
}
