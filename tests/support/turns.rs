//! A TCP proxy that counts a connection's round trips: how many times the
//! client spoke again after the server had answered. A pipeline (several
//! statements sent before the first answer is read) is one turn; each
//! statement awaited before the next is sent is a turn of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct TurnCounter {
    pub port: u16,
    turns: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl TurnCounter {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`
    /// ("host:port"); every connection's turns add to one count.
    pub async fn start(target: &str) -> TurnCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let turns: Arc<AtomicUsize> = Arc::default();
        let (target, counted) = (target.to_string(), turns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                tokio::spawn(forward(client, server, counted.clone()));
            }
        });
        TurnCounter {
            port,
            turns,
            accept,
        }
    }

    /// Turns counted since the start or the last [`TurnCounter::reset`].
    pub fn turns(&self) -> usize {
        self.turns.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.turns.store(0, Ordering::SeqCst);
    }
}

impl Drop for TurnCounter {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways in one task, so that the order in which the chunks
/// pass is the order in which they are counted.
async fn forward(mut client: TcpStream, mut server: TcpStream, turns: Arc<AtomicUsize>) {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let (mut up, mut down) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    // The server "spoke last" at the start: the client's first chunk is a turn.
    let mut server_spoke_last = true;
    loop {
        tokio::select! {
            n = from_client.read(&mut up) => {
                let Ok(n @ 1..) = n else { return };
                if server_spoke_last {
                    turns.fetch_add(1, Ordering::SeqCst);
                }
                server_spoke_last = false;
                if to_server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            n = from_server.read(&mut down) => {
                let Ok(n @ 1..) = n else { return };
                server_spoke_last = true;
                if to_client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
