//! `orchestrator probe URL`: the container health check. The image is
//! distroless (no shell, no curl), so the check is this binary asking its
//! neighbour process over loopback HTTP.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(3);

/// `http://HOST:PORT/PATH` split into its address and path.
fn split(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are probed (loopback health checks)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        bail!("{url}: name the port, e.g. http://127.0.0.1:9090/healthz");
    }
    Ok((authority.to_string(), path.to_string()))
}

pub fn run(url: &str) -> Result<()> {
    let (authority, path) = split(url)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("{url}: cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{url}: {authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("{url}: cannot connect"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 32];
    let n = stream
        .read(&mut head)
        .with_context(|| format!("{url}: no answer"))?;
    let status = String::from_utf8_lossy(&head[..n]);
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        return Ok(());
    }
    bail!("{url}: answered {:?}", status.lines().next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn urls_are_split_or_refused() {
        assert_eq!(
            split("http://127.0.0.1:9090/healthz").unwrap(),
            ("127.0.0.1:9090".to_string(), "/healthz".to_string())
        );
        assert_eq!(split("http://localhost:1").unwrap().1, "/");
        for bad in [
            "https://h:1/x",
            "127.0.0.1:9090/healthz",
            "http://host/x",
            "http:///x",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
