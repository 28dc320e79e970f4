//! TLS as SQL Server does it for TDS 7.x clients (MS-TDS 2.2.6.5, 3.3.5.1):
//! PRELOGIN negotiates the encryption level; the TLS handshake then travels
//! inside PRELOGIN packets (type 0x12), both ways; once it is complete the
//! TLS records go over TCP as they are, with the TDS packets inside them.
//! Negotiated "off" encrypts only the LOGIN7 packet: the server answers the
//! login in plaintext, and the session stays plaintext.
//!
//! The server's identity is made at start: a CA and a server certificate for
//! `localhost` and `127.0.0.1` signed by it (rcgen), the CA written as PEM for
//! clients to trust (`TrustServerCertificateCA=<path>`).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

use super::wire::PKT_PRELOGIN;

/// ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ (PRELOGIN's ENCRYPTION byte).
pub const ENCRYPT_OFF: u8 = 0x00;
pub const ENCRYPT_ON: u8 = 0x01;
pub const ENCRYPT_NOT_SUP: u8 = 0x02;
pub const ENCRYPT_REQ: u8 = 0x03;

/// The first byte of a TLS handshake record: a TDS 8.0 client's first byte.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// TDS 8.0's ALPN protocol id.
const TDS8_ALPN: &[u8] = b"tds/8.0";

/// The server's encryption setting, as SQL Server's configuration has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// No certificate: PRELOGIN answers ENCRYPT_NOT_SUP; a client that
    /// requires encryption gives up.
    NotSupported,
    /// A certificate, encryption not forced (SQL Server's default): a client
    /// asking for it gets the whole session encrypted, a client saying "off"
    /// gets its login encrypted only, a client without TLS gets plaintext.
    Available,
    /// "Force Encryption": every session is encrypted, whatever the client
    /// said; a client that cannot encrypt is disconnected after PRELOGIN.
    #[default]
    Required,
}

/// What PRELOGIN settled for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    Plaintext,
    LoginOnly,
    Full,
    /// The client cannot encrypt and the server requires it: answered, then closed.
    Refused,
}

impl Negotiated {
    /// The server's answer to the client's ENCRYPTION byte (the MS-TDS
    /// 2.2.6.5 table, server side), and what happens next.
    pub fn from_prelogin(server: Encryption, client: u8) -> (Negotiated, u8) {
        let client_can = client != ENCRYPT_NOT_SUP;
        let client_wants = client == ENCRYPT_ON || client == ENCRYPT_REQ;
        match server {
            Encryption::NotSupported => (Negotiated::Plaintext, ENCRYPT_NOT_SUP),
            Encryption::Available if client_wants => (Negotiated::Full, ENCRYPT_ON),
            Encryption::Available if client_can => (Negotiated::LoginOnly, ENCRYPT_OFF),
            Encryption::Available => (Negotiated::Plaintext, ENCRYPT_NOT_SUP),
            Encryption::Required if client_wants => (Negotiated::Full, ENCRYPT_ON),
            Encryption::Required if client_can => (Negotiated::Full, ENCRYPT_REQ),
            Encryption::Required => (Negotiated::Refused, ENCRYPT_REQ),
        }
    }
}

/// The server's certificate and key, and the CA that signed them (its PEM
/// file is what clients trust). The directory goes with it.
pub struct TlsIdentity {
    acceptor: tokio_rustls::TlsAcceptor,
    /// TDS 8.0: TLS 1.2 or 1.3 on the bare TCP stream, ALPN `tds/8.0`.
    strict: tokio_rustls::TlsAcceptor,
    dir: PathBuf,
    ca_pem: PathBuf,
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("TLS setup: {e}"))
}

impl TlsIdentity {
    /// A new CA and a server certificate for `localhost` and `127.0.0.1`
    /// (valid from yesterday for a year), the CA written to
    /// `<temp>/testkit-tds-<pid>-<n>/ca.pem`. TLS 1.2, as SQL Server offers
    /// it to TDS 7.x clients.
    pub fn generate() -> io::Result<TlsIdentity> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);

        let mut ca = CertificateParams::new(Vec::new()).map_err(tls_error)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "testkit TDS local CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = now - day;
        ca.not_after = now + day * 365;
        let ca_key = KeyPair::generate().map_err(tls_error)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(tls_error)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(tls_error)?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.use_authority_key_identifier_extension = true;
        server.not_before = now - day;
        server.not_after = now + day * 365;
        let server_key = KeyPair::generate().map_err(tls_error)?;
        let server_cert = server.signed_by(&server_key, &issuer).map_err(tls_error)?;

        let chain = vec![
            CertificateDer::from(server_cert.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls_error)?;
        let mut strict = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(tls_error)?;
        strict.alpn_protocols = vec![TDS8_ALPN.to_vec()];

        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("testkit-tds-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem())?;
        Ok(TlsIdentity {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            strict: tokio_rustls::TlsAcceptor::from(Arc::new(strict)),
            dir,
            ca_pem,
        })
    }

    /// The CA certificate (PEM) a client trusts to verify the server.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }

    /// TDS 8.0's strict encryption: TLS first, on the TCP stream as it is;
    /// PRELOGIN and everything after travel inside it.
    pub async fn accept_strict(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.strict.accept(tcp).await
    }

    /// The TLS handshake, inside PRELOGIN packets; then TLS as it is.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream<PreloginWrapped>> {
        let mut tls = self.acceptor.accept(PreloginWrapped::new(tcp)).await?;
        tls.get_mut().0.handshake_done = true;
        Ok(tls)
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsIdentity {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// After a login-only TLS session's LOGIN7: the TCP stream, plaintext again.
pub fn into_plaintext(tls: TlsStream<PreloginWrapped>) -> TcpStream {
    tls.into_inner().0.inner
}

/// The TCP stream as TLS sees it during the handshake: what TLS writes goes
/// out as PRELOGIN packets (one message per flush), what it reads is the
/// payload of the client's PRELOGIN packets. After the handshake, TLS
/// records pass as they are. Written by hand: TDS's wrapping is its own.
#[derive(Debug)]
pub struct PreloginWrapped {
    inner: TcpStream,
    handshake_done: bool,
    /// Reading: the packet header being read, and the payload bytes left.
    header: [u8; 8],
    header_read: usize,
    payload_left: usize,
    /// Writing: what TLS wrote since the last flush, and the framed bytes
    /// still to send.
    pending: Vec<u8>,
    framed: Vec<u8>,
    framed_sent: usize,
    packet_id: u8,
}

/// The largest PRELOGIN packet written (the default TDS packet size).
const PACKET_SIZE: usize = 4096;
const HEADER: usize = 8;

impl PreloginWrapped {
    fn new(inner: TcpStream) -> Self {
        PreloginWrapped {
            inner,
            handshake_done: false,
            header: [0; HEADER],
            header_read: 0,
            payload_left: 0,
            pending: Vec::new(),
            framed: Vec::new(),
            framed_sent: 0,
            packet_id: 1,
        }
    }

    /// Frames `pending` as PRELOGIN packets (the last one end-of-message).
    fn frame_pending(&mut self) {
        let chunks: Vec<&[u8]> = self.pending.chunks(PACKET_SIZE - HEADER).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let length = (chunk.len() + HEADER) as u16;
            let status = if i == last { 0x01 } else { 0x00 };
            self.framed.push(PKT_PRELOGIN);
            self.framed.push(status);
            self.framed.extend_from_slice(&length.to_be_bytes());
            self.framed.extend_from_slice(&[0, 0, self.packet_id, 0]);
            self.framed.extend_from_slice(chunk);
            self.packet_id = self.packet_id.wrapping_add(1);
        }
        self.pending.clear();
    }
}

impl AsyncRead for PreloginWrapped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.handshake_done {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.payload_left == 0 {
            let mut header = ReadBuf::new(&mut this.header[this.header_read..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut header))?;
            let got = header.filled().len();
            if got == 0 {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.header_read += got;
            if this.header_read < HEADER {
                continue;
            }
            this.header_read = 0;
            if this.header[0] != PKT_PRELOGIN {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected a PRELOGIN packet carrying TLS, got type 0x{:02X}",
                        this.header[0]
                    ),
                )));
            }
            let length = usize::from(u16::from_be_bytes([this.header[2], this.header[3]]));
            this.payload_left = length.saturating_sub(HEADER);
        }
        // Through a scratch buffer: at most the packet's payload left (the
        // handshake is a few kilobytes, once per connection).
        let mut scratch = [0u8; PACKET_SIZE];
        let want = this.payload_left.min(buf.remaining()).min(PACKET_SIZE);
        let mut part = ReadBuf::new(&mut scratch[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let got = part.filled();
        if got.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.put_slice(got);
        this.payload_left -= got.len();
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for PreloginWrapped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.handshake_done && this.framed_sent == this.framed.len() {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            this.frame_pending();
        }
        while this.framed_sent < this.framed.len() {
            let n =
                ready!(Pin::new(&mut this.inner).poll_write(cx, &this.framed[this.framed_sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.framed_sent += n;
        }
        this.framed.clear();
        this.framed_sent = 0;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut *this).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelogin_settles_encryption_as_sql_server_does() {
        use Encryption::*;
        use Negotiated::*;
        let cases = [
            (NotSupported, ENCRYPT_ON, (Plaintext, ENCRYPT_NOT_SUP)),
            (NotSupported, ENCRYPT_NOT_SUP, (Plaintext, ENCRYPT_NOT_SUP)),
            (Available, ENCRYPT_OFF, (LoginOnly, ENCRYPT_OFF)),
            (Available, ENCRYPT_ON, (Full, ENCRYPT_ON)),
            (Available, ENCRYPT_REQ, (Full, ENCRYPT_ON)),
            (Available, ENCRYPT_NOT_SUP, (Plaintext, ENCRYPT_NOT_SUP)),
            (Required, ENCRYPT_OFF, (Full, ENCRYPT_REQ)),
            (Required, ENCRYPT_ON, (Full, ENCRYPT_ON)),
            (Required, ENCRYPT_REQ, (Full, ENCRYPT_ON)),
            (Required, ENCRYPT_NOT_SUP, (Refused, ENCRYPT_REQ)),
        ];
        for (server, client, expected) in cases {
            assert_eq!(
                Negotiated::from_prelogin(server, client),
                expected,
                "{server:?} / client 0x{client:02X}"
            );
        }
    }
}
