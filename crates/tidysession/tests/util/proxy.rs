//! A loopback TCP proxy in front of a real server: counts the bytes a client sends, and can
//! cut every connection and refuse new ones (the server "goes away"), or hold back what the
//! server sends with connections left open (it "stops answering"), and then let everything
//! through again (it "comes back"), without stopping the server other tests share.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    sent: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    /// While true, what the server sends is held back (and delivered, in order, after).
    stalled: watch::Sender<bool>,
    /// Bumped on every cut; connections opened before a cut close when they see it.
    epoch: watch::Sender<u64>,
}

impl Proxy {
    /// A proxy in front of the server `url` names (`default_port` when it names none), and
    /// the same URL pointing at the proxy instead.
    pub async fn in_front_of(url: &str, default_port: u16) -> (Self, String) {
        let proxy = Self::start(server_of(url, default_port)).await;
        let through = via(url, proxy.addr);
        (proxy, through)
    }

    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0);
        let (stalled, _) = watch::channel(false);
        let (s, d, e, st) = (sent.clone(), down.clone(), epoch.clone(), stalled.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let (s, mut cut, st) = (s.clone(), e.subscribe(), st.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = pipe(client, server, s, st) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            sent,
            down,
            stalled,
            epoch,
        }
    }

    /// Bytes clients have sent through the proxy so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Holds back everything the server sends, leaving connections open: the server seems
    /// to hang.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Lets connections through again, and what was held back.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.stalled.send_replace(false);
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    sent: Arc<AtomicU64>,
    mut stalled: watch::Receiver<bool>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    sent.fetch_add(n as u64, Ordering::SeqCst);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if stalled.wait_for(|s| !*s).await.is_err() || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// The authority of `scheme://authority[/path][?query]` and what follows it, without the
/// slash.
fn authority(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    (scheme, authority, after.strip_prefix('/').unwrap_or(after))
}

/// `scheme://[user@]host[:port]/rest` with the host and port replaced by `addr`.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, authority, path) = authority(url);
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}

/// The server a URL such as `postgres://root@127.0.0.1:5432/test` points at.
pub fn server_of(url: &str, default_port: u16) -> SocketAddr {
    let authority = authority(url).1;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.contains(':') {
        true => host.to_owned(),
        false => format!("{host}:{default_port}"),
    };
    host.to_socket_addrs().unwrap().next().unwrap()
}
