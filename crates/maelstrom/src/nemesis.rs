//! The nemesis (spec §5.4): every U[0, 2·interval] s (on a fixed timeline), picks an enabled fault uniformly and
//! starts it if inactive, else stops it; when the main phase ends it stops every active fault.
//! All choices come from the `nemesis` stream, so a seed replays the same faults.

use crate::edn::{Edn, kw};
use crate::history::{History, OpType, Process};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Network partitions.
    Partition,
    /// SIGKILL, later restart with a new `init`.
    Kill,
    /// SIGSTOP, later SIGCONT.
    Pause,
    /// Random loss on node-to-node links.
    Lose,
}

impl Fault {
    /// Parses a `--nemesis` entry.
    pub fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "partition" => Fault::Partition,
            "kill" => Fault::Kill,
            "pause" => Fault::Pause,
            "lose" => Fault::Lose,
            _ => return None,
        })
    }

    /// The `--nemesis` name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Lose => "lose",
        }
    }
}

/// What the nemesis does to the world; implemented by the test runner.
pub trait World: Send + Sync {
    /// Installs a partition (`dest → sources it cannot hear`), or heals with an empty map.
    fn partition(&self, grudge: HashMap<String, HashSet<String>>);
    /// Starts or stops random loss.
    fn loss(&self, p: Option<f64>);
    /// Kills a node.
    fn kill(&self, node: &str);
    /// Restarts a killed node (new process, `init`, per-node setup).
    fn restart<'a>(&'a self, node: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// Pauses a node.
    fn pause(&self, node: &str);
    /// Resumes a paused node.
    fn resume(&self, node: &str);
}

/// The nemesis of one test.
pub struct Nemesis {
    faults: Vec<Fault>,
    interval: f64,
    lose_probability: f64,
    nodes: Vec<String>,
    rng: ChaCha8Rng,
    /// Active faults: their targets and a label for the progress line.
    active: BTreeMap<Fault, (Vec<String>, String)>,
    /// What is going on, for the progress line.
    pub status: Arc<Mutex<String>>,
}

impl Nemesis {
    /// A nemesis over `nodes` with the enabled `faults`.
    pub fn new(
        faults: Vec<Fault>,
        interval: f64,
        lose_probability: f64,
        nodes: Vec<String>,
        rng: ChaCha8Rng,
    ) -> Nemesis {
        Nemesis {
            faults,
            interval,
            lose_probability,
            nodes,
            rng,
            active: BTreeMap::new(),
            status: Arc::new(Mutex::new("none".into())),
        }
    }

    /// Runs until `until`, then stops every active fault.
    pub async fn run(mut self, until: Instant, world: &dyn World, history: &History) {
        if !self.faults.is_empty() {
            // Planned on an absolute timeline, so the number and order of events do not depend
            // on how long an operation (a restart, say) took.
            let mut at = Instant::now();
            loop {
                at +=
                    Duration::from_secs_f64(self.rng.gen_range(0.0..=2.0 * self.interval.max(0.0)));
                if at >= until {
                    tokio::time::sleep_until(until).await;
                    break;
                }
                tokio::time::sleep_until(at).await;
                let fault = self.faults[self.rng.gen_range(0..self.faults.len())];
                if self.active.contains_key(&fault) {
                    self.stop(fault, world, history).await;
                } else {
                    self.start(fault, world, history).await;
                }
            }
        }
        let active: Vec<Fault> = self.active.keys().copied().collect();
        for fault in active {
            self.stop(fault, world, history).await;
        }
    }

    fn targets(&mut self) -> Vec<String> {
        let n = self.nodes.len();
        let count = match self.rng.gen_range(0..4) {
            0 => 1,
            1 => n.div_ceil(2).saturating_sub(1).max(1),
            2 => n / 2 + 1,
            _ => n,
        };
        let mut nodes = self.nodes.clone();
        nodes.shuffle(&mut self.rng);
        nodes.truncate(count.min(n));
        nodes.sort();
        nodes
    }

    fn grudge(&mut self) -> Option<HashMap<String, HashSet<String>>> {
        let n = self.nodes.len();
        if n < 2 {
            return None;
        }
        let mut nodes = self.nodes.clone();
        nodes.shuffle(&mut self.rng);
        let split = |cut: usize, nodes: &[String]| {
            let (a, b) = nodes.split_at(cut);
            let mut g = HashMap::new();
            for x in a {
                g.insert(x.clone(), b.iter().cloned().collect());
            }
            for y in b {
                g.insert(y.clone(), a.iter().cloned().collect());
            }
            g
        };
        Some(match self.rng.gen_range(0..4) {
            0 => split(1, &nodes),
            1 => split(n / 2 + 1, &nodes),
            2 => split((n.div_ceil(3)).saturating_sub(1).max(1), &nodes),
            _ => {
                // Majorities ring: each node hears itself and its ⌊n/2⌋ nearest ring neighbours.
                let k = n / 2;
                let mut g = HashMap::new();
                for (i, me) in nodes.iter().enumerate() {
                    let mut sees: HashSet<usize> = HashSet::from([i]);
                    for d in 1..=k.div_ceil(2) {
                        sees.insert((i + d) % n);
                    }
                    for d in 1..=k / 2 {
                        sees.insert((i + n - d) % n);
                    }
                    let cut: HashSet<String> = (0..n)
                        .filter(|j| !sees.contains(j))
                        .map(|j| nodes[j].clone())
                        .collect();
                    g.insert(me.clone(), cut);
                }
                g
            }
        })
    }

    async fn start(&mut self, fault: Fault, world: &dyn World, history: &History) {
        let f = match fault {
            Fault::Partition => "start-partition",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Lose => "start-loss",
        };
        history.record(OpType::Info, f, Edn::Nil, Process::Nemesis, None, false);
        let (value, status, targets) = match fault {
            Fault::Partition => match self.grudge() {
                None => (
                    kw("no-partition-possible"),
                    "partition (none possible)".to_string(),
                    vec![],
                ),
                Some(g) => {
                    let mut entries: Vec<(String, Vec<String>)> = g
                        .iter()
                        .map(|(k, v)| {
                            let mut v: Vec<String> = v.iter().cloned().collect();
                            v.sort();
                            (k.clone(), v)
                        })
                        .collect();
                    entries.sort();
                    let isolated: Vec<&str> = entries
                        .iter()
                        .filter(|(_, v)| v.len() + 1 == self.nodes.len())
                        .map(|(k, _)| k.as_str())
                        .collect();
                    let status = if isolated.len() == 1 {
                        format!("partition ({} isolated)", isolated[0])
                    } else {
                        "partition".to_string()
                    };
                    world.partition(g);
                    let m = Edn::Map(
                        entries
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    Edn::Str(k),
                                    Edn::Vector(v.into_iter().map(Edn::Str).collect()),
                                )
                            })
                            .collect(),
                    );
                    (Edn::Vector(vec![kw("isolated"), m]), status, vec![])
                }
            },
            Fault::Kill | Fault::Pause => {
                let targets = self.targets();
                let (word, label) = if fault == Fault::Kill {
                    ("killed", "kill")
                } else {
                    ("paused", "pause")
                };
                for t in &targets {
                    if fault == Fault::Kill {
                        world.kill(t)
                    } else {
                        world.pause(t)
                    }
                }
                let m = Edn::Map(
                    targets
                        .iter()
                        .map(|t| (Edn::Str(t.clone()), kw(word)))
                        .collect(),
                );
                (m, format!("{label} ({})", targets.join(" ")), targets)
            }
            Fault::Lose => {
                world.loss(Some(self.lose_probability));
                (
                    Edn::Float(self.lose_probability),
                    format!("lose (p={})", self.lose_probability),
                    vec![],
                )
            }
        };
        history.record(OpType::Info, f, value, Process::Nemesis, None, false);
        self.active.insert(fault, (targets, status));
        self.set_status();
    }

    async fn stop(&mut self, fault: Fault, world: &dyn World, history: &History) {
        let targets = self
            .active
            .remove(&fault)
            .map(|(t, _)| t)
            .unwrap_or_default();
        let f = match fault {
            Fault::Partition => "stop-partition",
            Fault::Kill => "start",
            Fault::Pause => "resume",
            Fault::Lose => "stop-loss",
        };
        history.record(OpType::Info, f, Edn::Nil, Process::Nemesis, None, false);
        let value = match fault {
            Fault::Partition => {
                world.partition(HashMap::new());
                kw("network-healed")
            }
            Fault::Kill => {
                for t in &targets {
                    world.restart(t).await;
                }
                Edn::Map(
                    targets
                        .iter()
                        .map(|t| (Edn::Str(t.clone()), kw("restarted")))
                        .collect(),
                )
            }
            Fault::Pause => {
                for t in &targets {
                    world.resume(t);
                }
                Edn::Map(
                    targets
                        .iter()
                        .map(|t| (Edn::Str(t.clone()), kw("resumed")))
                        .collect(),
                )
            }
            Fault::Lose => {
                world.loss(None);
                Edn::Nil
            }
        };
        history.record(OpType::Info, f, value, Process::Nemesis, None, false);
        self.set_status();
    }

    fn set_status(&self) {
        let s = if self.active.is_empty() {
            "none".to_string()
        } else {
            self.active
                .values()
                .map(|(_, label)| label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        *self.status.lock().expect("status lock") = s;
    }
}
