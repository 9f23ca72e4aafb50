//! The yardstick: a minimal hello-world tonic service (`mianshen hello`), the request rate our
//! smallest RPC is measured against in the same loadgen run.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use super::pb::yardstick::{HelloReply, HelloRequest, greeter_server};

#[derive(Debug, Default)]
pub struct Greeter;

#[tonic::async_trait]
impl greeter_server::Greeter for Greeter {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("hello {}", req.into_inner().name),
        }))
    }
}

/// Serves the greeter on `listen` until the process ends; returns the bound address through
/// `bound` first.
pub async fn serve(
    listen: SocketAddr,
    bound: impl FnOnce(SocketAddr),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    bound(listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(greeter_server::GreeterServer::new(Greeter))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
