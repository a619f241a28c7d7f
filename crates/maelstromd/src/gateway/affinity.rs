//! Which CPU each proxy worker runs on, and which worker serves a client connection: the
//! one pinned to the CPU that the connection's packets arrive on (`SO_INCOMING_CPU`: the
//! CPU of the NIC queue for a remote client, the client's own CPU on loopback).
//!
//! Why: a proxied request wakes three parties — the proxy, the container, the client — and
//! each wake-up of a thread on another CPU is an inter-processor interrupt, which costs far
//! more than the request's own work in a virtual machine. When a connection is served on the
//! CPU its packets arrive on, and the container threads it wakes follow it there (the
//! scheduler's wake-affine placement), a request can complete without leaving that CPU.
//! The README's Performance section has the figures, with `MAEL_PROXY_CPU_AFFINITY=false`
//! for comparison.
//!
//! A pinned thread's new threads and child processes inherit its one CPU, so the worker
//! runtimes' blocking threads and the processes maelstromd starts are unpinned
//! ([`unpin_thread`], [`unpin_child`]).
//!
//! On `libc`: socket2 reads `SO_INCOMING_CPU` but does not pin threads, and each of these is
//! one system call.

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// The CPUs the process could run on before any worker was pinned (a cpuset, `taskset`,
/// systemd's `CPUAffinity=`): what unpinned threads and children get back.
static PROCESS_CPUS: OnceLock<libc::cpu_set_t> = OnceLock::new();

/// The CPUs the proxy workers are pinned to: worker `i` runs on `cpus[i]`.
#[derive(Debug)]
pub struct CpuMap {
    cpus: Vec<usize>,
    /// Indexed by CPU number: the worker pinned there.
    worker_of: Vec<Option<usize>>,
}

impl CpuMap {
    /// One worker per CPU this process may run on, when there are `workers` such CPUs; `None`
    /// when the counts differ (a CPU quota below the CPUs allowed, say), so that no CPU is
    /// left without a worker to steer its connections to.
    pub fn for_workers(workers: usize) -> Option<CpuMap> {
        let set = current_set()?;
        let cpus = cpus_in(&set);
        if cpus.len() != workers || workers < 2 {
            return None;
        }
        PROCESS_CPUS.get_or_init(|| set);
        let mut worker_of = vec![None; cpus.iter().max().map_or(0, |m| m + 1)];
        for (w, &cpu) in cpus.iter().enumerate() {
            worker_of[cpu] = Some(w);
        }
        Some(CpuMap { cpus, worker_of })
    }

    /// Pins the calling thread to worker `worker`'s CPU.
    pub fn pin(&self, worker: usize) -> std::io::Result<()> {
        pin_thread(self.cpus[worker])
    }

    /// The worker pinned to the CPU that `socket`'s packets last arrived on, if any.
    pub fn worker_for(&self, socket: &impl AsRawFd) -> Option<usize> {
        let cpu = incoming_cpu(socket)?;
        self.worker_of.get(cpu).copied().flatten()
    }
}

/// The CPU that processed the last packet received on `socket`.
fn incoming_cpu(socket: &impl AsRawFd) -> Option<usize> {
    let mut cpu: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `cpu` and `len` outlive the call, and `len` is `cpu`'s size.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&mut cpu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0 && cpu >= 0).then_some(cpu as usize)
}

/// Gives the calling thread the process's CPUs back: for the threads a pinned worker
/// starts. Nothing to do when no worker was pinned.
pub fn unpin_thread() {
    if let Some(set) = PROCESS_CPUS.get() {
        let _ = set_affinity(set);
    }
}

/// Gives `command`'s process maelstromd's CPUs, whichever thread starts it.
pub fn unpin_child(command: &mut tokio::process::Command) {
    let Some(&set) = PROCESS_CPUS.get() else {
        return;
    };
    // SAFETY: between fork and exec the closure makes one system call on a copied set and
    // allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let _ = set_affinity(&set);
            Ok(())
        });
    }
}

/// Pins the calling thread to `cpu`, one of [`allowed_cpus`].
pub fn pin_thread(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: an all-zero `cpu_set_t` is an empty set, and `cpu` is below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set)
}

fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; the call only reads it.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's CPU set.
fn current_set() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero `cpu_set_t` is an empty set, which the kernel overwrites.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    let cpus = cpus_in(&current_set()?);
    (!cpus.is_empty()).then_some(cpus)
}

fn cpus_in(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, set) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// On loopback the incoming CPU is the sender's: a client pinned to each allowed CPU in
    /// turn is steered to the worker of that CPU.
    #[test]
    fn a_loopback_connection_is_steered_to_the_worker_on_its_clients_cpu() {
        let cpus = allowed_cpus().expect("the allowed CPUs");
        let Some(map) = CpuMap::for_workers(cpus.len()) else {
            eprintln!("one CPU: nothing to steer");
            return;
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for worker in 0..cpus.len() {
            let (map, listener) = (&map, &listener);
            let (accepted, client) = std::thread::scope(|s| {
                s.spawn(move || {
                    map.pin(worker).unwrap();
                    let mut client = TcpStream::connect(addr).unwrap();
                    std::io::Write::write_all(&mut client, b"x").unwrap();
                    let (accepted, _) = listener.accept().unwrap();
                    (accepted, client)
                })
                .join()
                .unwrap()
            });
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut &accepted, &mut byte).unwrap();
            assert_eq!(map.worker_for(&accepted), Some(worker));
            drop(client);
        }
    }

    #[test]
    fn a_thread_started_by_a_pinned_one_is_unpinned_again() {
        let cpus = allowed_cpus().unwrap();
        let Some(map) = CpuMap::for_workers(cpus.len()) else {
            return;
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                map.pin(0).unwrap();
                assert_eq!(allowed_cpus().unwrap(), vec![cpus[0]]);
                let inner = std::thread::spawn(|| {
                    unpin_thread();
                    allowed_cpus().unwrap()
                });
                assert_eq!(inner.join().unwrap(), cpus);
            });
        });
    }

    #[test]
    fn no_map_when_the_workers_do_not_match_the_cpus() {
        let n = allowed_cpus().unwrap().len();
        assert!(CpuMap::for_workers(n + 1).is_none());
        assert!(CpuMap::for_workers(1).is_none());
        assert_eq!(CpuMap::for_workers(n).is_some(), n >= 2);
    }
}
