//! A minimal terminal chat client: every line read from standard input is sent as a message
//! `{"text": line}` to one conversation, and every event the server pushes is printed.
//! It exits at the end of input, or when the server closes the connection. The client crate
//! does not depend on RocksDB, so selecting it with `-p` compiles no C++:
//!
//! ```text
//! cargo run --release -p bulkhead-client --example chat -- ws://127.0.0.1:8080 "$TOKEN" team
//! ```

use std::time::Duration;

use bulkhead_client::{ServerFrame, WsClient};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, conv] = args.as_slice() else {
        eprintln!("usage: chat WS_URL TOKEN CONVERSATION   (e.g. ws://127.0.0.1:8080 \"$TOKEN\" team)");
        std::process::exit(2);
    };

    let client = WsClient::connect(url, token).await?;
    eprintln!("connected; type a line and press Enter to send it, Ctrl-D to quit");

    let printer = client.clone();
    tokio::spawn(async move {
        loop {
            match printer.next_event(Duration::from_secs(3600)).await {
                Some(ServerFrame::Message(m)) => println!("[{} #{}] {}: {}", m.conv, m.seq, m.from, m.body.get()),
                Some(other) => println!("{other:?}"),
                None if printer.closed().is_some() => break,
                None => {}
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0u64;
    while let Some(line) = lines.next_line().await? {
        n += 1;
        let client_msg_id = format!("chat-{}-{n}", std::process::id());
        match client.send(conv, &client_msg_id, serde_json::json!({ "text": line })).await {
            Ok(ack) => eprintln!("sent as seq {}", ack.seq),
            Err(err) => eprintln!("send failed: {err}"),
        }
    }
    client.close().await?;
    Ok(())
}
