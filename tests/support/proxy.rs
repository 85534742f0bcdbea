//! A TCP proxy a test can cut and restore, to make a service unavailable to
//! one worker without disturbing the other tests that share the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    /// Milliseconds each new connection waits before it is forwarded.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    /// Connections refused while cut: proof that a client met the cut.
    refused: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target` ("host:port").
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let delay_ms: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let target = target.to_string();
        let refused: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (o, l, d, r) = (
            open.clone(),
            live.clone(),
            delay_ms.clone(),
            refused.clone(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client); // refused while cut
                    r.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let target = target.clone();
                let wait = std::time::Duration::from_millis(d.load(Ordering::SeqCst));
                let task = tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        });
        TcpProxy {
            port,
            open,
            delay_ms,
            live,
            refused,
            accept,
        }
    }

    /// How many connections were refused while cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// New connections wait this long before they are forwarded.
    pub fn delay_new_connections(&self, d: std::time::Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for t in self.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// `url` with its host:port replaced by 127.0.0.1:`port`.
pub fn via(url: &str, port: u16) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let at = rest.find('@').map_or(0, |i| i + 1);
    let host_end = rest[at..].find(['/', '?']).map_or(rest.len(), |i| i + at);
    format!(
        "{}{}127.0.0.1:{port}{}",
        &url[..scheme_end],
        &rest[..at],
        &rest[host_end..]
    )
}

/// host:port of a URL.
pub fn host_port(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let at = rest.find('@').map_or(0, |i| i + 1);
    let host_end = rest[at..].find(['/', '?']).map_or(rest.len(), |i| i + at);
    let hp = &rest[at..host_end];
    if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:5432")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rerouted() {
        assert_eq!(
            via("postgres://u:p@10.0.0.1:5432/db?x=1", 7),
            "postgres://u:p@127.0.0.1:7/db?x=1"
        );
        assert_eq!(host_port("postgres://u:p@h:5433/db"), "h:5433");
        assert_eq!(host_port("postgres://h/db"), "h:5432");
    }
}
