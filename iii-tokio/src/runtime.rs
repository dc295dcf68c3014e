//! [`Runtime`] for tokio.

use std::io;
use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use iii_driver::{BoxFuture, Runtime};
use tokio::net::TcpStream;

/// The tokio runtime, as the driver sees it. Must be used from inside a tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Tcp = TokioAdapter<TcpStream>;

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioAdapter::new(stream))
        })
    }
}
