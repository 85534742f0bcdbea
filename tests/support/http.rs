//! A minimal HTTP/1.1 GET for the workers' ops endpoints (status line,
//! headers and body as one string); `None` while nothing listens.

pub async fn get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// A port nothing listens on right now, for a program that cannot bind
/// port 0 and say which port it got (PostgreSQL): it may be taken before the
/// program binds it, so the caller retries on another. Our own servers and
/// chromedriver bind port 0 instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
