//! The link itself: a TUN device in each namespace and a thread that forwards packets
//! between them through one netem model per direction.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use str0m_netem::{Input, Netem, Output};
use tokio::sync::oneshot;

use super::namespace::ip;
use super::{ADDR_A, ADDR_B, LinkProfile, NetNs, NetemError};

const MTU: u16 = 1500;
const TUN_NAME: &str = "wan0";

/// Packets seen by the forwarder, per direction.
#[derive(Debug, Default)]
pub struct WanLinkStats {
    pub a_to_b: AtomicU64,
    pub b_to_a: AtomicU64,
}

/// Two namespaces joined by an emulated link; everything is torn down on drop.
#[derive(Debug)]
pub struct WanLink {
    pub a: NetNs,
    pub b: NetNs,
    pub profile: LinkProfile,
    pub stats: Arc<WanLinkStats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WanLink {
    /// Creates namespaces `<prefix>-a` and `<prefix>-b` joined by a link with `profile`.
    /// Namespace A has [`ADDR_A`], namespace B [`ADDR_B`].
    pub fn start(prefix: &str, profile: LinkProfile) -> Result<WanLink, NetemError> {
        let a = NetNs::create(&format!("{prefix}-a"))?;
        let b = NetNs::create(&format!("{prefix}-b"))?;
        let stats = Arc::new(WanLinkStats::default());
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (a_name, b_name) = (a.name().to_owned(), b.name().to_owned());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("wan-link".into())
            .spawn(move || {
                let devices = open_devices(&a_name, &b_name);
                let (dev_a, dev_b) = match devices {
                    Ok(d) => {
                        let _ = ready_tx.send(Ok(()));
                        d
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                forward(dev_a, dev_b, profile, thread_stats, stopped);
            })
            .map_err(|e| NetemError::Forwarder(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(NetemError::Forwarder(
                    "the forwarder thread died while starting".into(),
                ));
            }
        }
        // Point-to-point routes: each side reaches the other through its TUN device.
        ip(&[
            "-n",
            a.name(),
            "route",
            "replace",
            &format!("{ADDR_B}/32"),
            "dev",
            TUN_NAME,
        ])?;
        ip(&[
            "-n",
            b.name(),
            "route",
            "replace",
            &format!("{ADDR_A}/32"),
            "dev",
            TUN_NAME,
        ])?;
        Ok(WanLink {
            a,
            b,
            profile,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for WanLink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the TUN device of each side from inside its namespace (this thread enters
/// them in turn; the file descriptors keep working from anywhere afterwards).
fn open_devices(a: &str, b: &str) -> Result<(tun::Device, tun::Device), NetemError> {
    let ns_a = NamespaceRef(a);
    let ns_b = NamespaceRef(b);
    let dev_a = ns_a.create_tun(ADDR_A, ADDR_B)?;
    let dev_b = ns_b.create_tun(ADDR_B, ADDR_A)?;
    Ok((dev_a, dev_b))
}

struct NamespaceRef<'a>(&'a str);

impl NamespaceRef<'_> {
    fn create_tun(&self, local: Ipv4Addr, peer: Ipv4Addr) -> Result<tun::Device, NetemError> {
        let path = format!("/var/run/netns/{}", self.0);
        let enter_error = |source| NetemError::Enter {
            name: self.0.to_owned(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(enter_error)?;
        nix::sched::setns(
            std::os::fd::AsFd::as_fd(&file),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .map_err(|errno| enter_error(std::io::Error::from(errno)))?;
        let mut config = tun::Configuration::default();
        config
            .tun_name(TUN_NAME)
            .address(local)
            .destination(peer)
            .netmask((255, 255, 255, 255))
            .mtu(MTU)
            .up();
        tun::create(&config).map_err(|e| NetemError::Tun {
            name: format!("{TUN_NAME} in {}", self.0),
            detail: e.to_string(),
        })
    }
}

/// The forwarding loop, on a current-thread runtime owned by this thread.
fn forward(
    a: tun::Device,
    b: tun::Device,
    profile: LinkProfile,
    stats: Arc<WanLinkStats>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let (Ok(a), Ok(b)) = (tun::AsyncDevice::new(a), tun::AsyncDevice::new(b)) else {
            return;
        };
        let mut a_to_b: Netem<Vec<u8>> = Netem::new(profile.netem(0));
        let mut b_to_a: Netem<Vec<u8>> = Netem::new(profile.netem(1));
        let mut buf_a = vec![0u8; usize::from(MTU) + 64];
        let mut buf_b = vec![0u8; usize::from(MTU) + 64];
        loop {
            let next = a_to_b.poll_timeout().min(b_to_a.poll_timeout());
            tokio::select! {
                _ = &mut stop => return,
                read = a.recv(&mut buf_a) => if let Ok(n) = read {
                    stats.a_to_b.fetch_add(1, Ordering::Relaxed);
                    a_to_b.handle_input(Input::Packet(Instant::now(), buf_a[..n].to_vec()));
                },
                read = b.recv(&mut buf_b) => if let Ok(n) = read {
                    stats.b_to_a.fetch_add(1, Ordering::Relaxed);
                    b_to_a.handle_input(Input::Packet(Instant::now(), buf_b[..n].to_vec()));
                },
                () = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    a_to_b.handle_input(Input::Timeout(now));
                    b_to_a.handle_input(Input::Timeout(now));
                }
            }
            deliver(&mut a_to_b, &b).await;
            deliver(&mut b_to_a, &a).await;
        }
    });
}

/// Writes every packet whose time has come; a full TUN queue drops it, like a real link.
async fn deliver(netem: &mut Netem<Vec<u8>>, out: &tun::AsyncDevice) {
    while let Some(output) = netem.poll_output() {
        match output {
            Output::Packet(packet) => {
                let _ = out.send(&packet).await;
            }
            Output::Timeout(_) => break,
        }
    }
}
