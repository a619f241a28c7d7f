//! The transactional checker on minimal histories, one per anomaly class, including the
//! ranking of consistency models.

use maelstrom::checker::elle::{self, TxnKind};
use maelstrom::edn::{self, Edn};
use maelstrom::history;
use maelstrom::workload::CheckContext;
use std::time::Duration;

/// A transaction: process, outcome, micro-ops as EDN, invocation and completion times.
struct T(u64, &'static str, &'static str, u64, u64);

fn history_edn(txns: &[T]) -> String {
    let mut events: Vec<(u64, String)> = vec![];
    for T(p, status, mops, inv, done) in txns {
        events.push((
            *inv * 2,
            format!("{{:process {p}, :type :invoke, :f :txn, :value {mops}, :time {inv}}}"),
        ));
        events.push((
            *done * 2 + 1,
            format!("{{:process {p}, :type :{status}, :f :txn, :value {mops}, :time {done}}}"),
        ));
    }
    events.sort_by_key(|e| e.0);
    events
        .into_iter()
        .map(|e| e.1)
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_with(kind: TxnKind, models: &str, txns: &[T], final_reads: &[&str]) -> Edn {
    let mut text = history_edn(txns);
    for (i, f) in final_reads.iter().enumerate() {
        let t = 1000 + i as u64 * 2;
        text.push_str(&format!("\n{{:process 99, :type :invoke, :f :txn, :value {f}, :time {t}, :final? true}}\n{{:process 99, :type :ok, :f :txn, :value {f}, :time {}, :final? true}}", t + 1));
    }
    let ops = history::from_edn(edn::parse_all(&text).unwrap(), None, None).unwrap();
    let ctx = CheckContext {
        dir: None,
        timeout: Duration::from_secs(10),
        memory: 1 << 30,
        consistency_models: models.split(',').map(String::from).collect(),
    };
    elle::check(&ops, kind, &ctx)
}

fn check(txns: &[T]) -> Edn {
    check_with(TxnKind::ListAppend, "strict-serializable", txns, &[])
}

fn types(r: &Edn) -> Vec<String> {
    match r.get("anomaly-types") {
        Some(Edn::Vector(v)) => v
            .iter()
            .map(|t| t.to_string().trim_start_matches(':').to_string())
            .collect(),
        _ => vec![],
    }
}

fn has(r: &Edn, t: &str) -> bool {
    types(r).iter().any(|x| x == t)
}

#[test]
fn a_serial_history_is_valid() {
    let r = check(&[
        T(0, "ok", "[[:append 1 1] [:r 2 nil]]", 0, 1),
        T(1, "ok", "[[:r 1 [1]] [:append 2 1]]", 2, 3),
        T(0, "ok", "[[:r 2 [1]]]", 4, 5),
    ]);
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(true)), "{}", r.pretty());
    assert!(types(&r).is_empty());
}

#[test]
fn g0_write_cycle() {
    let r = check(&[
        T(0, "ok", "[[:append 1 1] [:append 2 1]]", 0, 10),
        T(1, "ok", "[[:append 1 2] [:append 2 2]]", 0, 10),
        T(2, "ok", "[[:r 1 [1 2]] [:r 2 [2 1]]]", 20, 21),
    ]);
    assert!(has(&r, "G0"), "{}", r.pretty());
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    assert!(
        r.get("not")
            .unwrap()
            .to_string()
            .contains(":read-uncommitted"),
        "{}",
        r.pretty()
    );
}

#[test]
fn g1a_aborted_read_and_g1b_intermediate_read() {
    let r = check(&[
        T(0, "fail", "[[:append 1 1]]", 0, 1),
        T(1, "ok", "[[:r 1 [1]]]", 2, 3),
    ]);
    assert!(has(&r, "G1a"), "{}", r.pretty());
    let r = check(&[
        T(0, "ok", "[[:append 1 1] [:append 1 2]]", 0, 5),
        T(1, "ok", "[[:r 1 [1]]]", 1, 2),
    ]);
    assert!(has(&r, "G1b"), "{}", r.pretty());
}

#[test]
fn g1c_circular_information_flow() {
    let r = check(&[
        T(0, "ok", "[[:append 1 1] [:r 2 [1]]]", 0, 10),
        T(1, "ok", "[[:append 2 1] [:r 1 [1]]]", 0, 10),
    ]);
    assert!(has(&r, "G1c"), "{}", r.pretty());
}

#[test]
fn g_single_read_skew() {
    let r = check(&[
        T(0, "ok", "[[:r 1 []] [:r 2 [1]]]", 0, 10),
        T(1, "ok", "[[:append 1 1] [:append 2 1]]", 0, 10),
        T(2, "ok", "[[:r 1 [1]]]", 20, 21),
    ]);
    assert!(has(&r, "G-single"), "{}", r.pretty());
    assert!(
        r.get("not")
            .unwrap()
            .to_string()
            .contains(":snapshot-isolation"),
        "{}",
        r.pretty()
    );
}

#[test]
fn write_skew_is_allowed_by_snapshot_isolation_but_not_repeatable_read() {
    let txns = [
        T(0, "ok", "[[:r 1 []] [:r 2 []] [:append 1 1]]", 0, 10),
        T(1, "ok", "[[:r 1 []] [:r 2 []] [:append 2 1]]", 0, 10),
        T(2, "ok", "[[:r 1 [1]] [:r 2 [1]]]", 20, 21),
    ];
    let si = check_with(TxnKind::ListAppend, "snapshot-isolation", &txns, &[]);
    assert!(has(&si, "G2-item"), "{}", si.pretty());
    assert_eq!(
        si.get("valid?"),
        Some(&Edn::Bool(true)),
        "allowed under SI: {}",
        si.pretty()
    );
    let rr = check_with(TxnKind::ListAppend, "repeatable-read", &txns, &[]);
    assert_eq!(rr.get("valid?"), Some(&Edn::Bool(false)));
    assert_eq!(
        rr.get("not").unwrap().to_string(),
        "#{:repeatable-read}",
        "repeatable read and snapshot isolation are incomparable; serializable is stronger"
    );
    assert_eq!(
        rr.get("also-not").unwrap().to_string(),
        "#{:serializable :strong-session-serializable :strict-serializable :strong-serializable}"
    );
}

#[test]
fn g_nonadjacent() {
    let r = check(&[
        T(0, "ok", "[[:r 1 []] [:r 4 [1]]]", 0, 10),
        T(1, "ok", "[[:append 1 1] [:append 2 1]]", 0, 10),
        T(2, "ok", "[[:r 2 [1]] [:r 3 []]]", 0, 10),
        T(3, "ok", "[[:append 3 1] [:append 4 1]]", 0, 10),
        T(4, "ok", "[[:r 1 [1]] [:r 3 [1]]]", 20, 21),
    ]);
    assert!(has(&r, "G-nonadjacent"), "{}", r.pretty());
}

#[test]
fn realtime_and_process_variants() {
    // T1 finished appending before T2 began, yet T2 did not see it.
    let r = check(&[
        T(0, "ok", "[[:append 1 1]]", 0, 1),
        T(1, "ok", "[[:r 1 []]]", 5, 6),
        T(2, "ok", "[[:r 1 [1]]]", 7, 8),
    ]);
    assert!(has(&r, "G-single-realtime"), "{}", r.pretty());
    assert_eq!(
        r.get("not").unwrap().to_string(),
        "#{:strong-snapshot-isolation}"
    );
    let serializable = check_with(
        TxnKind::ListAppend,
        "serializable",
        &[
            T(0, "ok", "[[:append 1 1]]", 0, 1),
            T(1, "ok", "[[:r 1 []]]", 5, 6),
            T(2, "ok", "[[:r 1 [1]]]", 7, 8),
        ],
        &[],
    );
    assert_eq!(
        serializable.get("valid?"),
        Some(&Edn::Bool(true)),
        "serializable allows stale reads"
    );
    let same_process = check(&[
        T(0, "ok", "[[:append 1 1]]", 0, 1),
        T(0, "ok", "[[:r 1 []]]", 5, 6),
        T(2, "ok", "[[:r 1 [1]]]", 7, 8),
    ]);
    assert!(
        has(&same_process, "G-single-process"),
        "{}",
        same_process.pretty()
    );
}

#[test]
fn lost_update_and_the_always_invalid_anomalies() {
    let r = check(&[
        T(0, "ok", "[[:r 1 []] [:append 1 1]]", 0, 10),
        T(1, "ok", "[[:r 1 []] [:append 1 2]]", 0, 10),
        T(2, "ok", "[[:r 1 [1 2]]]", 20, 21),
    ]);
    assert!(has(&r, "lost-update"), "{}", r.pretty());
    for (txns, anomaly) in [
        (
            vec![
                T(0, "ok", "[[:append 1 1]]", 0, 1),
                T(1, "ok", "[[:r 1 [1 1]]]", 2, 3),
            ],
            "duplicate-elements",
        ),
        (
            vec![
                T(0, "ok", "[[:append 1 1] [:append 1 2] [:append 1 3]]", 0, 1),
                T(1, "ok", "[[:r 1 [1 2]]]", 2, 3),
                T(2, "ok", "[[:r 1 [1 3]]]", 2, 3),
            ],
            "incompatible-order",
        ),
        (
            vec![T(0, "ok", "[[:append 1 1] [:r 1 []]]", 0, 1)],
            "internal",
        ),
        (vec![T(0, "ok", "[[:r 1 [9]]]", 0, 1)], "garbage-read"),
    ] {
        let r = check_with(TxnKind::ListAppend, "read-uncommitted", &txns, &[]);
        assert!(has(&r, anomaly), "{anomaly}: {}", r.pretty());
        assert_eq!(
            r.get("valid?"),
            Some(&Edn::Bool(false)),
            "{anomaly} is invalid under every model"
        );
    }
}

#[test]
fn rw_register_g0_from_final_reads_and_cyclic_versions() {
    let txns = [
        T(0, "ok", "[[:w 1 1] [:w 2 1]]", 0, 10),
        T(1, "ok", "[[:w 1 2] [:w 2 2]]", 0, 10),
    ];
    let r = check_with(
        TxnKind::RwRegister,
        "read-uncommitted",
        &txns,
        &["[[:r 1 2] [:r 2 1]]"],
    );
    assert!(
        has(&r, "G0"),
        "final reads x=2, y=1 order the writes both ways: {}",
        r.pretty()
    );
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    let fine = check_with(
        TxnKind::RwRegister,
        "read-uncommitted",
        &txns,
        &["[[:r 1 2] [:r 2 2]]"],
    );
    assert_eq!(
        fine.get("valid?"),
        Some(&Edn::Bool(true)),
        "{}",
        fine.pretty()
    );
    let cyclic = check_with(
        TxnKind::RwRegister,
        "read-uncommitted",
        &[
            T(0, "ok", "[[:w 1 1]]", 0, 1),
            T(1, "ok", "[[:r 1 1] [:w 1 2]]", 2, 3),
            T(2, "ok", "[[:r 1 2] [:w 1 1]]", 4, 5),
        ],
        &[],
    );
    assert!(has(&cyclic, "cyclic-versions"), "{}", cyclic.pretty());
}

#[test]
fn a_stronger_variant_on_the_same_transactions_is_not_hidden() {
    // T_B then T_A by one process; each read the key the other appended to: G2-item through
    // rw edges, and G-single-process through the process edge, on the same two transactions.
    let txns = [
        T(0, "ok", "[[:r 2 []] [:append 1 1]]", 0, 1),
        T(0, "ok", "[[:r 1 []] [:append 2 1]]", 2, 3),
        T(1, "ok", "[[:r 1 [1]] [:r 2 [1]]]", 10, 11),
    ];
    let r = check_with(
        TxnKind::ListAppend,
        "strong-session-snapshot-isolation",
        &txns,
        &[],
    );
    assert!(
        has(&r, "G2-item") && has(&r, "G-single-process"),
        "{}",
        r.pretty()
    );
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
}

#[test]
fn always_invalid_anomalies_violate_every_model() {
    let r = check(&[T(0, "ok", "[[:r 1 [9]]]", 0, 1)]);
    assert_eq!(
        r.get("not").unwrap().to_string(),
        "#{:read-uncommitted}",
        "{}",
        r.pretty()
    );
    assert!(
        r.get("also-not")
            .unwrap()
            .to_string()
            .contains(":strict-serializable")
    );
}

#[test]
fn an_operation_invoked_twice_by_one_process_is_an_error() {
    let text = "{:type :invoke :f :write :value 1} {:type :invoke :f :read :value nil} {:type :ok :f :write :value 1}";
    let err = history::from_edn(edn::parse_all(text).unwrap(), None, None).unwrap_err();
    assert!(
        err.contains("op 1") && err.contains("anonymous process"),
        "{err}"
    );
    assert!(
        edn::parse_all(&"[".repeat(100_000))
            .unwrap_err()
            .contains("nested more than")
    );
}

#[test]
fn dirty_update_builds_on_a_failed_append() {
    // T0's append of 1 failed, yet T1's committed append of 2 came right after it in the
    // version order that T2 read: T1 updated state that was aborted.
    let r = check_with(
        TxnKind::ListAppend,
        "read-committed",
        &[
            T(0, "fail", "[[:append 1 1]]", 0, 1),
            T(1, "ok", "[[:append 1 2]]", 2, 3),
            T(2, "ok", "[[:r 1 [1 2]]]", 4, 5),
        ],
        &[],
    );
    assert!(has(&r, "dirty-update"), "{}", r.pretty());
    assert!(has(&r, "G1a"), "T2 also read the aborted 1: {}", r.pretty());
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
}

#[test]
fn appends_no_read_shows_still_order_the_readers_before_them() {
    // Write skew where nobody reads the appends back: each transaction read the initial
    // state of the key the other appended to, so each precedes the other (rw both ways).
    let skew = [
        T(0, "ok", "[[:append 1 1] [:r 2 []]]", 0, 10),
        T(1, "ok", "[[:append 2 1] [:r 1 []]]", 0, 10),
    ];
    let r = check_with(TxnKind::ListAppend, "serializable", &skew, &[]);
    assert!(has(&r, "G2-item"), "{}", r.pretty());
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    let si = check_with(TxnKind::ListAppend, "snapshot-isolation", &skew, &[]);
    assert_eq!(si.get("valid?"), Some(&Edn::Bool(true)), "{}", si.pretty());
    // T0 appends to 1 and 2; T1 appends to 1 after it (a later read shows [1 2]) but read 2
    // before T0's append, which no read shows: one rw edge closes the cycle.
    let r = check_with(
        TxnKind::ListAppend,
        "snapshot-isolation",
        &[
            T(0, "ok", "[[:append 1 1] [:append 2 1]]", 0, 10),
            T(1, "ok", "[[:append 1 2] [:r 2 []]]", 0, 10),
            T(2, "ok", "[[:r 1 [1 2]]]", 20, 21),
        ],
        &[],
    );
    assert!(has(&r, "G-single"), "{}", r.pretty());
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    assert_eq!(
        r.get("not").unwrap().to_string(),
        "#{:snapshot-isolation :repeatable-read}"
    );
    // A failed append that nobody read orders nothing: with no edge at all, nothing could
    // be checked, and the verdict is unknown (as Elle's).
    let r = check(&[
        T(0, "fail", "[[:append 1 1]]", 0, 10),
        T(1, "ok", "[[:r 1 []]]", 0, 10),
    ]);
    assert_eq!(r.get("valid?"), Some(&edn::kw("unknown")), "{}", r.pretty());
    assert_eq!(types(&r), ["empty-transaction-graph"]);
}

#[test]
fn g_nonadjacent_violates_snapshot_isolation() {
    // Two rw edges, never adjacent: T0 -rw-> T1 -wr-> T2 -rw-> T3 -wr-> T0.
    let r = check_with(
        TxnKind::ListAppend,
        "snapshot-isolation",
        &[
            T(0, "ok", "[[:r 1 []] [:r 4 [1]]]", 0, 10),
            T(1, "ok", "[[:append 1 1] [:append 2 1]]", 0, 10),
            T(2, "ok", "[[:r 2 [1]] [:r 3 []]]", 0, 10),
            T(3, "ok", "[[:append 3 1] [:append 4 1]]", 0, 10),
        ],
        &[],
    );
    assert!(has(&r, "G-nonadjacent"), "{}", r.pretty());
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
    assert_eq!(
        r.get("not").unwrap().to_string(),
        "#{:snapshot-isolation :repeatable-read}"
    );
}

#[test]
fn a_history_of_completions_alone_is_checked() {
    // No invocations, as Elle's own test histories are written: each :ok op is a whole
    // transaction, with no real-time order between them.
    let text = "{:process 0, :type :ok, :f :txn, :value [[:append 1 1] [:r 2 [1]]]}\n{:process 1, :type :ok, :f :txn, :value [[:append 2 1] [:r 1 [1]]]}";
    let ops = history::from_edn(edn::parse_all(text).unwrap(), None, None).unwrap();
    let ctx = CheckContext {
        dir: None,
        timeout: Duration::from_secs(10),
        memory: 1 << 30,
        consistency_models: vec!["read-committed".into()],
    };
    let r = elle::check(&ops, TxnKind::ListAppend, &ctx);
    assert!(has(&r, "G1c"), "{}", r.pretty());
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)));
}
