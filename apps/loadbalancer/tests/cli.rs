//! The `lb` binary's configuration commands: `lb init` writes a file `lb check`
//! accepts; a bad value, a missing key or an unknown key exits 2 with one line
//! naming the key path.

use std::process::Command;

fn lb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lb"))
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn init() -> String {
    let out = lb().arg("init").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn init_writes_a_config_that_check_accepts_with_the_table_size_written_out() {
    let text = init();
    assert!(text.contains("maglev_table_size = 65537"));
    let p = write("ok.toml", &text);
    let out = lb().args(["check", "-c"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 frontends, 1 backends, 3 servers)"));
}

fn check_fails(name: &str, text: &str, expect: &str) {
    let p = write(name, text);
    let out = lb().args(["check", "-c"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{name}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(expect), "{name}: '{err}' lacks '{expect}'");
}

#[test]
fn check_exits_2_naming_the_key_path() {
    let text = init();
    let third_weight = text.match_indices("weight = 1").nth(2).unwrap().0;
    let bad = format!("{}weight = 257{}", &text[..third_weight], &text[third_weight + 10..]);
    check_fails("weight.toml", &bad, "backends.web.servers[2].weight: must be 0..=256");
    check_fails(
        "missing.toml",
        &text.replace("queue_ms = 5000", ""),
        "backends.web.timeouts: missing field `queue_ms`",
    );
    check_fails("unknown.toml", &text.replace("[admin]\n", "[admin]\nport = 1\n"), "admin.port: unknown field `port`");
    check_fails("syntax.toml", "[tcp\n", "line 1");
    check_fails(
        "unresolved.toml",
        &text.replace("tcp://198.18.2.2:8081", "tcp://nowhere.invalid:8081"),
        "backends.web.servers[1].uri: 'tcp://nowhere.invalid:8081' does not resolve",
    );
}

#[test]
fn a_missing_file_and_a_bad_flag_exit_2() {
    let out = lb().args(["check", "-c", "/nonexistent/lb.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = lb().args(["check", "--frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_refuses_flags_that_do_not_fit_the_stack_with_one_line_and_status_2() {
    let p = write("run.toml", &init());
    for (args, want) in [
        (vec!["--stack", "kernel", "--cores", "0", "--grace-ms", "1", "--port", "tap:x"], "--port is for --stack user"),
        (vec!["--stack", "user", "--cores", "0", "--grace-ms", "1"], "--stack user needs --port"),
        (
            vec!["--stack", "user", "--cores", "0,1", "--grace-ms", "1", "--port", "tap:x", "--ip", "198.18.0.1/24"],
            "needs --rss-key",
        ),
        (
            vec![
                "--stack",
                "user",
                "--cores",
                "0",
                "--grace-ms",
                "1",
                "--port",
                "tap:x",
                "--ip",
                "198.18.0.1/24",
                "--rss-key",
                "abcd",
            ],
            "--rss-key: 2 bytes",
        ),
        (vec!["--stack", "kernel", "--cores", "0", "--grace-ms", "1", "--rss-key", "microsoft"], "--rss-key is for"),
        (vec!["--stack", "kernel", "--cores", "0"], "--grace-ms"),
    ] {
        let out = lb().args(["run", "-c"]).arg(&p).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn init_forward_writes_a_forwarding_config_that_check_accepts_and_names_its_faults() {
    let out = lb().args(["init", "--forward"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[forward.vip]"));
    let p = write("fwd.toml", &text);
    let out = lb().args(["check", "-c"]).arg(&p).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok (0 frontends, 1 backends, 3 servers, 1 forward frontends)")
    );
    check_fails(
        "fwd-encap.toml",
        &text.replace("encap = \"l2dsr\"", "encap = \"vxlan\""),
        "forward.vip.encap: must be \"l2dsr\", \"ipip\" or \"gue\"",
    );
    check_fails(
        "fwd-missing.toml",
        &text.replace("fragments = \"drop\"", ""),
        "forward.vip: missing field `fragments`",
    );
}
