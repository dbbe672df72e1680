//! Opens N keep-alive connections to ADDR, sends one request on each (100 at a time),
//! then holds them all idle until killed: `bench/nginx.sh` reads the proxy's resident
//! memory meanwhile.
//!
//! `cargo run --release -p threadline-proxy --example bench_idle -- 127.0.0.1:8080 10000`

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().expect("ADDR").parse().expect("an address");
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut held = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let batch = (n - done).min(100);
            let mut tasks = Vec::new();
            for _ in 0..batch {
                tasks.push(tokio::spawn(async move {
                    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
                    tcp.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nx-routing-key: alice\r\n\r\n")
                        .await?;
                    let mut buf = [0u8; 1024];
                    let got = tcp.read(&mut buf).await?;
                    if !buf[..got].starts_with(b"HTTP/1.1 200") {
                        return Err(std::io::Error::other("not a 200"));
                    }
                    Ok::<_, std::io::Error>(tcp)
                }));
            }
            for t in tasks {
                held.push(t.await.expect("task")?);
            }
            done += batch;
        }
        println!("held {}", held.len());
        std::future::pending::<()>().await;
        Ok(())
    })
}
