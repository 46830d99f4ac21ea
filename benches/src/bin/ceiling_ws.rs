//! `ceiling-ws`: the smallest WebSocket server that the bulkhead client can drive, the
//! network ceiling that bulkhead's sends are compared with.
//!
//! It serves `GET /v1/ws` on actix-web and actix-ws, as bulkhead does, with the same number
//! of workers (one per core) and TCP_NODELAY. It accepts any token and responds to every
//! text frame with `{"op":"ok","id":…,"seq":0,"ts":0}` carrying the request's `id`. So the
//! client matches the responses to its sends as it does with bulkhead. It stores nothing and
//! delivers nothing. It logs `listening on ADDR` to stderr once bound, and stops on SIGTERM.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::Message;
use clap::Parser;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Parser)]
#[command(name = "ceiling-ws", about = "Run a WebSocket server that responds to every frame with an ok and does nothing else")]
struct Args {
    /// Address to listen on. Only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

/// The one field of a request that the response carries back.
#[derive(Deserialize)]
struct RequestId<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

async fn upgrade(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, body)?;

    actix_web::rt::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let sent = match message {
                Message::Text(text) => {
                    let id = serde_json::from_str::<RequestId<'_>>(&text)
                        .ok()
                        .and_then(|request| request.id.map(|id| id.get().to_owned()))
                        .unwrap_or_else(|| "null".to_owned());
                    session.text(format!(r#"{{"op":"ok","id":{id},"seq":0,"ts":0}}"#)).await
                }
                Message::Ping(bytes) => session.pong(&bytes).await,
                Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "refusing to listen on {}: only loopback addresses are allowed",
            args.listen
        )));
    }

    let server = HttpServer::new(|| App::new().route("/v1/ws", web::get().to(upgrade)))
        .tcp_nodelay(true)
        .bind(args.listen)?;
    for addr in server.addrs() {
        eprintln!("listening on {addr}");
    }
    server.run().await
}
