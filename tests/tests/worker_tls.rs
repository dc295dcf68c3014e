//! `wss://`: a worker reaches the engine through a TLS-terminating proxy (a certificate
//! for `localhost` made at test time, trusted through `tls_root_certificates`), calls a
//! function, and streams through a channel whose two ends dial `wss://` too.

use std::sync::Arc;
use std::time::Duration;

use iii_tests::adapter::Flavor;

use iii_tokio::worker::{connect, ChannelReader, Error, WorkerOptions};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Accepts TLS on an ephemeral port and pipes each connection to `engine` (plain TCP).
async fn tls_proxy(engine: std::net::SocketAddr) -> (u16, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let ca = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(ca.clone())], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(engine).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, ca)
}

#[test]
fn calls_and_channels_over_wss() {
    iii_tests::adapter::TokioFlavor::block_on(async {
        let engine = iii_tokio::bind("127.0.0.1:0", Default::default())
            .await
            .expect("engine");
        let (port, ca) = tls_proxy(engine.local_addr()).await;
        let url = format!("wss://localhost:{port}");
        let options = |name: &str| WorkerOptions {
            url: Some(url.clone()),
            name: Some(name.to_owned()),
            tls_root_certificates: vec![ca.clone()],
            ..WorkerOptions::default()
        };
        let owner = connect(options("tls-owner")).expect("owner");
        let caller = connect(options("tls-caller")).expect("caller");
        let me = owner.clone();
        owner
            .register_function("tls.count", move |input: Value| {
                let iii = me.clone();
                async move {
                    let reader_ref = serde_json::from_value(input["reader"].clone())?;
                    let bytes = ChannelReader::new(&iii, &reader_ref).read_all().await?;
                    Ok::<_, Error>(json!(bytes.len()))
                }
            })
            .expect("register");
        owner
            .wait_registered(Duration::from_secs(30))
            .await
            .expect("registered over wss");
        let channel = caller.create_channel(None).await.expect("channel");
        let counting = caller.trigger("tls.count", json!({"reader": channel.reader_ref}));
        let writing = async {
            channel.writer.write(&vec![7u8; 1 << 20]).await?;
            channel.writer.close().await
        };
        let (count, written) = futures_util::join!(counting, writing);
        written.expect("written over wss");
        assert_eq!(count.expect("counted"), json!(1 << 20));

        // Trusting another certificate only, the worker refuses the engine's.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("another certificate");
        let mut untrusting = options("tls-untrusting");
        untrusting.tls_root_certificates = vec![other.cert.der().to_vec()];
        untrusting.core.connect_timeout = Duration::from_millis(500);
        let iii = connect(untrusting).expect("valid options");
        match iii.wait_connected(Duration::from_secs(30)).await {
            Err(Error::Unreachable { detail, .. }) => {
                assert!(detail.contains("TLS"), "{detail}")
            }
            other => panic!("expected an untrusted engine to be unreachable: {other:?}"),
        }
        iii.shutdown().await;
        // No roots at all (built without a root store feature): refused at connect.
        let mut rootless = options("tls-rootless");
        rootless.tls_root_certificates.clear();
        if let Err(error) = connect(rootless) {
            assert!(matches!(error, Error::InvalidOption(_)), "{error:?}");
        }
        owner.shutdown().await;
        caller.shutdown().await;
        engine.shutdown().await;
    });
}
