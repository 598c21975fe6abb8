//! A plain byte-copy hop on one tokio thread: the floor of what any tokio proxy costs, used by
//! the benchmark scripts as a column beside PgBouncer and shardgate (`HOP=1`).
//!
//! It reads no message and routes nothing: each client connection gets its own connection to
//! the target, and bytes are copied both ways as they come, on a current-thread runtime as
//! shardgate's workers use. What shardgate costs above this is its own work.
//!
//! Usage: `hop LISTEN TARGET`, e.g. `hop 127.0.0.1:6433 127.0.0.1:5432`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Copies `from` to `to` until either side ends.
async fn copy(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn serve(client: TcpStream, target: String) -> std::io::Result<()> {
    let server = TcpStream::connect(&target).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Both directions in one task, as a session of shardgate's is one task.
    tokio::join!(copy(cr, sw), copy(sr, cw));
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target] = args.as_slice() else {
        eprintln!("usage: hop LISTEN TARGET");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        // A script's background job ignores SIGINT unless the program handles it.
        let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
        loop {
            let (client, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = &mut stop => return Ok(()),
            };
            let target = target.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(client, target).await {
                    eprintln!("hop: {e}");
                }
            });
        }
    })
}
