//! The kafka checker on minimal histories, one per error type.

use maelstrom::checker::kafka;
use maelstrom::edn::{self, Edn};
use maelstrom::history;

fn check(text: &str) -> Edn {
    kafka::check(&history::from_edn(edn::parse_all(text).unwrap(), None, None).unwrap())
}

fn types(r: &Edn) -> String {
    r.get("error-types").unwrap().to_string()
}

const SEND_A0: &str = "{:process 0 :type :invoke :f :send :value [[:send \"a\" 1]] :time 1} {:process 0 :type :ok :f :send :value [[:send \"a\" [0 1]]] :time 2}";

fn poll(p: u64, t: u64, pairs: &str) -> String {
    format!(
        "{{:process {p} :type :invoke :f :poll :value [[:poll]] :time {t}}} {{:process {p} :type :ok :f :poll :value [[:poll {{\"a\" [{pairs}]}}]] :time {}}}",
        t + 1
    )
}

#[test]
fn a_clean_log_is_valid() {
    let r = check(&format!("{SEND_A0} {}", poll(1, 5, "[0 1]")));
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(true)), "{}", r.pretty());
}

#[test]
fn each_error_type_is_found() {
    let send = |p: u64, m: i64, o: Option<i64>, t: u64, ty: &str| match o {
        Some(o) => format!(
            "{{:process {p} :type :invoke :f :send :value [[:send \"a\" {m}]] :time {t}}} {{:process {p} :type :{ty} :f :send :value [[:send \"a\" [{o} {m}]]] :time {}}}",
            t + 1
        ),
        None => format!(
            "{{:process {p} :type :invoke :f :send :value [[:send \"a\" {m}]] :time {t}}} {{:process {p} :type :{ty} :f :send :value [[:send \"a\" {m}]] :time {}}}",
            t + 1
        ),
    };
    let cases = [
        (
            format!(
                "{} {}",
                send(0, 1, Some(0), 1, "ok"),
                send(0, 1, Some(1), 3, "ok")
            ),
            ":duplicate",
        ),
        (
            format!("{} {}", send(0, 1, Some(0), 1, "ok"), poll(1, 5, "[0 9]")),
            ":inconsistent-offsets",
        ),
        (
            format!(
                "{} {} {}",
                send(0, 1, Some(0), 1, "ok"),
                send(0, 2, Some(1), 3, "ok"),
                poll(1, 5, "[1 2]")
            ),
            ":lost-write",
        ),
        (send(0, 1, Some(0), 1, "ok"), ":unseen"),
        (
            format!("{} {}", send(0, 1, None, 1, "fail"), poll(1, 5, "[0 1]")),
            ":G1a",
        ),
        (
            format!("{} {}", poll(1, 1, "[0 1]"), send(0, 1, Some(0), 5, "ok")),
            ":precommitted-read",
        ),
        (
            format!(
                "{} {} {}",
                send(0, 1, Some(5), 1, "ok"),
                send(0, 2, Some(3), 3, "ok"),
                poll(1, 9, "[3 2] [5 1]")
            ),
            ":nonmonotonic-send",
        ),
        (
            format!(
                "{} {} {} {}",
                send(0, 1, Some(0), 1, "ok"),
                send(0, 2, Some(1), 3, "ok"),
                poll(1, 5, "[1 2]"),
                poll(1, 7, "[0 1]")
            ),
            ":nonmonotonic-poll",
        ),
        (
            format!(
                "{} {} {} {} {}",
                send(0, 1, Some(0), 1, "ok"),
                send(0, 2, Some(1), 3, "ok"),
                send(0, 3, Some(2), 5, "ok"),
                poll(1, 7, "[0 1]"),
                poll(1, 9, "[2 3]")
            ),
            ":poll-skip",
        ),
        (
            format!(
                "{} {} {} {}",
                send(0, 1, Some(0), 1, "ok"),
                send(0, 2, Some(1), 3, "ok"),
                send(0, 3, Some(2), 5, "ok"),
                poll(1, 7, "[0 1] [2 3]")
            ),
            ":int-poll-skip",
        ),
        (
            format!(
                "{} {} {}",
                send(0, 1, Some(0), 1, "ok"),
                send(0, 2, Some(1), 3, "ok"),
                poll(1, 7, "[1 2] [0 1]")
            ),
            ":int-nonmonotonic-poll",
        ),
    ];
    for (text, want) in cases {
        let r = check(&text);
        assert!(types(&r).contains(want), "{want}: {}", r.pretty());
        assert_eq!(r.get("valid?"), Some(&Edn::Bool(false)), "{want}");
    }
}

#[test]
fn an_assign_resets_the_consumer_position() {
    let sends = "{:process 0 :type :invoke :f :send :value [[:send \"a\" 1]] :time 1} {:process 0 :type :ok :f :send :value [[:send \"a\" [0 1]]] :time 2} {:process 0 :type :invoke :f :send :value [[:send \"a\" 2]] :time 3} {:process 0 :type :ok :f :send :value [[:send \"a\" [1 2]]] :time 4}";
    let assign = "{:process 1 :type :invoke :f :assign :value [\"a\"] :time 7} {:process 1 :type :ok :f :assign :value [\"a\"] :time 8}";
    let r = check(&format!(
        "{sends} {} {assign} {}",
        poll(1, 5, "[0 1] [1 2]"),
        poll(1, 9, "[0 1] [1 2]")
    ));
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(true)), "{}", r.pretty());
}

#[test]
fn synthetic_logs_are_valid() {
    use rand::SeedableRng;
    let ops = maelstrom::synth::kafka(&mut rand_chacha::ChaCha8Rng::seed_from_u64(4), 2_000, 3, 2);
    let r = kafka::check(&ops);
    assert_eq!(r.get("valid?"), Some(&Edn::Bool(true)), "{}", r.pretty());
}
