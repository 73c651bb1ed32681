//! A loopback TCP proxy that counts the bytes clients send upstream: what a
//! push really uploads, measured outside the client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

pub struct CountingProxy {
    /// `127.0.0.1:<port>`: connect here instead of upstream.
    pub addr: String,
    up: Arc<AtomicU64>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream` (`host:port`), for the life of the process.
    pub fn start(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let up = Arc::new(AtomicU64::new(0));
        let (counter, upstream) = (up.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Ok(server) = TcpStream::connect(&upstream) {
                    let _ = forward(client, server, counter.clone());
                }
            }
        });
        Ok(Self { addr, up })
    }

    /// Bytes sent upstream so far, over every connection.
    pub fn bytes_up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }
}

/// Copies both directions on their own threads, counting client → server.
fn forward(client: TcpStream, server: TcpStream, counter: Arc<AtomicU64>) -> Result<()> {
    let (mut client_r, mut server_w) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || {
        let mut buf = [0; 64 * 1024];
        while let Ok(n @ 1..) = client_r.read(&mut buf) {
            counter.fetch_add(n as u64, Ordering::Relaxed);
            if server_w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server_w.shutdown(Shutdown::Write);
    });
    let (mut server_r, mut client_w) = (server, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Write);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_clients_send_and_relays_answers() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_addr = upstream.local_addr().unwrap().to_string();
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = upstream.accept().unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).unwrap();
            stream.write_all(&got).unwrap();
        });
        let proxy = CountingProxy::start(&upstream_addr).unwrap();
        let mut client = TcpStream::connect(&proxy.addr).unwrap();
        client.write_all(b"twelve bytes").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        echo.join().unwrap();
        assert_eq!(answer, "twelve bytes");
        assert_eq!(proxy.bytes_up(), 12);
    }
}
