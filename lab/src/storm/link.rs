//! The link's throughput, measured on the very veth the storm uses: for 3 s, 4 TCP streams
//! carry zeros from the server namespace to the client namespace (the direction UKIs travel),
//! written from memory in 256 KiB writes. Bytes read ÷ time is the bound no server can beat.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::net::{self, StormNet, SERVER_IP};

const STREAMS: usize = 4;
const MEASURE: Duration = Duration::from_secs(3);

/// Bytes per second, server → clients.
pub fn measure(netw: &StormNet) -> anyhow::Result<f64> {
    let (server_ns, client_ns) = (netw.server_ns.clone(), netw.client_ns.clone());
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || -> anyhow::Result<()> {
        let setup = || -> anyhow::Result<TcpListener> {
            net::enter(&server_ns).context("entering the server namespace")?;
            Ok(TcpListener::bind(SocketAddrV4::new(SERVER_IP, 0))?)
        };
        let l = match setup() {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e));
                return Ok(());
            }
        };
        let _ = tx.send(Ok(l.local_addr()?));
        let mut threads = Vec::new();
        for _ in 0..STREAMS {
            let (mut s, _) = l.accept()?;
            let stop = stop_w.clone();
            threads.push(std::thread::spawn(move || {
                let buf = vec![0u8; 256 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            }));
        }
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .context("the throughput writer did not start")??;
    let total = Arc::new(AtomicU64::new(0));
    let reader = {
        let total = total.clone();
        std::thread::spawn(move || -> anyhow::Result<f64> {
            net::enter(&client_ns).context("entering the client namespace")?;
            let streams: Vec<TcpStream> = (0..STREAMS)
                .map(|_| TcpStream::connect(addr))
                .collect::<Result<_, _>>()?;
            let start = Instant::now();
            let handles: Vec<_> = streams
                .into_iter()
                .map(|mut s| {
                    let total = total.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = vec![0u8; 256 * 1024];
                        while start.elapsed() < MEASURE {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    total.fetch_add(n as u64, Ordering::Relaxed);
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => break,
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                let _ = h.join();
            }
            Ok(start.elapsed().as_secs_f64())
        })
    };
    let secs = reader.join().expect("reader thread");
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let secs = secs?;
    Ok(total.load(Ordering::Relaxed) as f64 / secs)
}
