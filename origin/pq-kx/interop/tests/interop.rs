//! X25519MLKEM768 between heady-pq-kx (ring + RustCrypto ml-kem) and rustls's aws-lc-rs
//! provider, an independent implementation, over real TCP on 127.0.0.1.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{TestPki, SERVER_NAME};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, NamedGroup, ServerConfig, ServerConnection, StreamOwned,
};

const MESSAGE: &[u8] = b"post-quantum mesh ping";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// rustls's own X25519MLKEM768 first, as `prefer-post-quantum` orders it.
fn aws_lc_rs_provider() -> CryptoProvider {
    let provider = aws_lc_rs::default_provider();
    assert_eq!(
        provider.kx_groups.first().map(|g| g.name()),
        Some(NamedGroup::X25519MLKEM768),
        "aws-lc-rs provider must prefer X25519MLKEM768"
    );
    provider
}

/// Accepts one TLS connection on a loopback port, echoes one message, and returns the group the
/// server negotiated.
fn serve_one_echo(config: Arc<ServerConfig>) -> (u16, thread::JoinHandle<Option<NamedGroup>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let server = thread::spawn(move || {
        let (socket, _) = listener.accept().expect("accept");
        socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        socket.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let conn = ServerConnection::new(config).expect("server connection");
        let mut tls = StreamOwned::new(conn, socket);
        let mut received = vec![0; MESSAGE.len()];
        tls.read_exact(&mut received).expect("server reads");
        tls.write_all(&received).expect("server echoes");
        tls.flush().expect("server flush");
        let group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
        group
    });
    (port, server)
}

/// Connects, sends [`MESSAGE`], reads the echo and returns it with the group the client negotiated.
fn echo_through(port: u16, config: Arc<ClientConfig>) -> (Vec<u8>, Option<NamedGroup>) {
    let socket = TcpStream::connect(("127.0.0.1", port)).expect("connect loopback");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let name = ServerName::try_from(SERVER_NAME).expect("valid name");
    let conn = ClientConnection::new(config, name).expect("client connection");
    let mut tls = StreamOwned::new(conn, socket);
    tls.write_all(MESSAGE).expect("client writes");
    let mut echoed = vec![0; MESSAGE.len()];
    tls.read_exact(&mut echoed).expect("client reads the echo");
    let group = tls.conn.negotiated_key_exchange_group().map(|g| g.name());
    (echoed, group)
}

#[test]
fn heady_client_and_aws_lc_rs_server_agree_on_x25519mlkem768() {
    let pki = TestPki::new();
    let (port, server) = serve_one_echo(pki.server_config(aws_lc_rs_provider()));
    let (echoed, client_group) = echo_through(port, pki.client_config(heady_pq_kx::provider()));
    let server_group = server.join().expect("server thread");
    assert_eq!(echoed, MESSAGE);
    assert_eq!(client_group, Some(NamedGroup::X25519MLKEM768));
    assert_eq!(server_group, Some(NamedGroup::X25519MLKEM768));
}

#[test]
fn aws_lc_rs_client_and_heady_server_agree_on_x25519mlkem768() {
    let pki = TestPki::new();
    let (port, server) = serve_one_echo(pki.server_config(heady_pq_kx::provider()));
    let (echoed, client_group) = echo_through(port, pki.client_config(aws_lc_rs_provider()));
    let server_group = server.join().expect("server thread");
    assert_eq!(echoed, MESSAGE);
    assert_eq!(client_group, Some(NamedGroup::X25519MLKEM768));
    assert_eq!(server_group, Some(NamedGroup::X25519MLKEM768));
}
