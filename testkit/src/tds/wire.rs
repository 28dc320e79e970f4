//! TDS wire format, server side: packet framing, a bounds-checked reader for
//! client messages, and a writer for the tokens a server sends.
//!
//! Written by hand because no maintained crate implements the server side of
//! TDS with RPC support (Microsoft's `mssql-mock-tds` handles SQL batches
//! only). References: MS-TDS sections 2.2.3 (packet header), 2.2.6 (client
//! messages) and 2.2.7 (tokens), and the client it must satisfy (tiberius).

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PKT_SQL_BATCH: u8 = 0x01;
pub const PKT_RPC: u8 = 0x03;
pub const PKT_REPLY: u8 = 0x04;
pub const PKT_ATTENTION: u8 = 0x06;
pub const PKT_LOGIN7: u8 = 0x10;
pub const PKT_PRELOGIN: u8 = 0x12;

const STATUS_EOM: u8 = 0x01;
/// RESETCONNECTION and RESETCONNECTIONSKIPTRAN (MS-TDS 2.2.3.1.2): the
/// client's pool asks for the session's state to be reset before this request.
pub const STATUS_RESET_CONNECTION: u8 = 0x08 | 0x10;
/// RESETCONNECTIONSKIPTRAN: reset, but keep the open transaction.
pub const STATUS_RESET_SKIP_TRAN: u8 = 0x10;
const HEADER_LEN: usize = 8;
/// Largest client message we accept (a 10,000-character parameter is ~20 KB).
const MAX_MESSAGE_LEN: usize = 8 * 1024 * 1024;

pub const TOKEN_COLMETADATA: u8 = 0x81;
pub const TOKEN_ROW: u8 = 0xD1;
pub const TOKEN_DONE: u8 = 0xFD;
pub const TOKEN_DONEPROC: u8 = 0xFE;
pub const TOKEN_DONEINPROC: u8 = 0xFF;
const TOKEN_RETURNSTATUS: u8 = 0x79;
const TOKEN_RETURNVALUE: u8 = 0xAC;
const TOKEN_ERROR: u8 = 0xAA;
const TOKEN_INFO: u8 = 0xAB;
const TOKEN_LOGINACK: u8 = 0xAD;
const TOKEN_FEATUREEXTACK: u8 = 0xAE;
const TOKEN_ENVCHANGE: u8 = 0xE3;

pub const DONE_FINAL: u16 = 0x00;
pub const DONE_MORE: u16 = 0x01;
pub const DONE_ERROR: u16 = 0x02;
pub const DONE_COUNT: u16 = 0x10;
pub const DONE_ATTN: u16 = 0x20;

/// ENVCHANGE types (MS-TDS 2.2.7.9).
pub const ENV_DATABASE: u8 = 1;
pub const ENV_LANGUAGE: u8 = 2;
pub const ENV_PACKET_SIZE: u8 = 4;
pub const ENV_COLLATION: u8 = 7;
pub const ENV_BEGIN_TRAN: u8 = 8;
pub const ENV_COMMIT_TRAN: u8 = 9;
pub const ENV_ROLLBACK_TRAN: u8 = 10;
pub const ENV_RESET_ACK: u8 = 18;

/// A TDS protocol version as LOGIN7 and LOGINACK spell it (MS-TDS 2.2.6.4:
/// the client's; 2.2.7.14: the server's, in network byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TdsVersion(pub u32);

impl TdsVersion {
    pub const V7_1: TdsVersion = TdsVersion(0x7100_0001);
    pub const V7_2: TdsVersion = TdsVersion(0x7209_0002);
    pub const V7_3A: TdsVersion = TdsVersion(0x730A_0003);
    pub const V7_3B: TdsVersion = TdsVersion(0x730B_0003);
    pub const V7_4: TdsVersion = TdsVersion(0x7400_0004);
    /// TDS 8.0 (strict encryption: TLS before PRELOGIN).
    pub const V8_0: TdsVersion = TdsVersion(0x0800_0000);

    /// What SQL Server answers a client's LOGIN7 version with: the same
    /// version when it speaks it, the highest below it otherwise (7.4 for
    /// anything newer), and 7.1 for anything older (7.0 and earlier are
    /// not spoken here). LOGIN7 carries 7.1 as 0x71000001 and some clients
    /// send the older 0x07010000 spelling; both are 7.1.
    pub fn negotiate(client: u32) -> TdsVersion {
        match client {
            0x0800_0000 => TdsVersion::V8_0,
            v if v >= TdsVersion::V7_4.0 => TdsVersion::V7_4,
            v if v >= TdsVersion::V7_3B.0 => TdsVersion::V7_3B,
            v if v >= TdsVersion::V7_3A.0 => TdsVersion::V7_3A,
            v if v >= TdsVersion::V7_2.0 => TdsVersion::V7_2,
            _ => TdsVersion::V7_1,
        }
    }

    /// 7.2 and later: 8-byte DONE row counts, 4-byte column user types.
    pub fn is_72_or_later(self) -> bool {
        self == TdsVersion::V8_0 || self >= TdsVersion::V7_2
    }

    /// 7.3 and later: the date and time types.
    pub fn has_date_types(self) -> bool {
        self == TdsVersion::V8_0 || self >= TdsVersion::V7_3A
    }
}

// Type bytes (MS-TDS 2.2.5.4).
const TY_NULL: u8 = 0x1F;
const TY_INT1: u8 = 0x30;
const TY_BIT: u8 = 0x32;
const TY_INT2: u8 = 0x34;
const TY_INT4: u8 = 0x38;
const TY_FLT8: u8 = 0x3E;
const TY_INT8: u8 = 0x7F;
const TY_INTN: u8 = 0x26;
const TY_DATEN: u8 = 0x28;
const TY_DATETIME2N: u8 = 0x2A;
const TY_BITN: u8 = 0x68;
const TY_FLTN: u8 = 0x6D;
const TY_NVARCHAR: u8 = 0xE7;

/// SQL_Latin1_General_CP1_CI_AS (LCID 0x0409, sort id 52), SQL Server's default
/// collation: the database's (ENVCHANGE 7 at login), and sent with NVARCHAR
/// column metadata.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
const TY_SMALLINT_N: u8 = TY_INTN;
const TY_SSVARIANT: u8 = 0x62;

/// A malformed or unsupported client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessageError(pub String);

impl fmt::Display for ClientMessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientMessageError {}

fn protocol<T>(message: impl Into<String>) -> Result<T, ClientMessageError> {
    Err(ClientMessageError(message.into()))
}

/// One client message, reassembled from its packets.
#[derive(Debug)]
pub struct Message {
    pub packet_type: u8,
    /// The first packet's status bits.
    pub status: u8,
    pub payload: Vec<u8>,
}

/// Reads the next message. `Ok(None)` on a clean end of stream between messages.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Message>> {
    let mut payload = Vec::new();
    let mut packet_type = None;
    let mut status = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && packet_type.is_none() => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if length < HEADER_LEN || payload.len() + length > MAX_MESSAGE_LEN {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad TDS packet length {length}"),
            ));
        }
        if *packet_type.get_or_insert(header[0]) != header[0] {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "packet type changed inside a message",
            ));
        }
        let status = *status.get_or_insert(header[1]);
        let start = payload.len();
        payload.resize(start + length - HEADER_LEN, 0);
        reader.read_exact(&mut payload[start..]).await?;
        if header[1] & STATUS_EOM != 0 {
            return Ok(Some(Message {
                packet_type: header[0],
                status,
                payload,
            }));
        }
    }
}

/// Writes `payload` as one message of `packet_type`, split into packets of at
/// most `packet_size` bytes.
pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packet_type: u8,
    payload: &[u8],
    packet_size: usize,
) -> std::io::Result<()> {
    let chunk_len = packet_size.max(512) - HEADER_LEN;
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(chunk_len).collect()
    };
    let mut out = Vec::with_capacity(payload.len() + chunks.len() * HEADER_LEN);
    for (i, chunk) in chunks.iter().enumerate() {
        let status = if i + 1 == chunks.len() { STATUS_EOM } else { 0 };
        let length = (chunk.len() + HEADER_LEN) as u16;
        out.extend_from_slice(&[packet_type, status]);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&[0x00, 0x36, (i as u8).wrapping_add(1), 0x00]); // spid 54, packet id, window
        out.extend_from_slice(chunk);
    }
    writer.write_all(&out).await?;
    writer.flush().await
}

/// A bounds-checked cursor over a client message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ClientMessageError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => protocol(format!(
                "message ends early (wanted {n} bytes at offset {})",
                self.pos
            )),
        }
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ClientMessageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, ClientMessageError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16_le(&mut self) -> Result<u16, ClientMessageError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u16_be(&mut self) -> Result<u16, ClientMessageError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32_le(&mut self) -> Result<u32, ClientMessageError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> Result<u64, ClientMessageError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `n` UTF-16LE code units.
    pub fn utf16(&mut self, n: usize) -> Result<String, ClientMessageError> {
        decode_utf16(self.bytes(n * 2)?)
    }

    /// B_VARCHAR: a one-byte character count, then UTF-16LE.
    pub fn b_varchar(&mut self) -> Result<String, ClientMessageError> {
        let n = usize::from(self.u8()?);
        self.utf16(n)
    }
}

pub fn decode_utf16(bytes: &[u8]) -> Result<String, ClientMessageError> {
    if !bytes.len().is_multiple_of(2) {
        return protocol("odd-length UTF-16 string");
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| ClientMessageError("invalid UTF-16 string".into()))
}

/// A typed SQL value, as a parameter arrives or as a column is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A parameter's SQL type, as its TYPE_INFO declares it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Null,
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    NVarChar,
    NVarCharMax,
    Date,
    DateTime2,
}

impl WireType {
    pub fn name(self) -> &'static str {
        match self {
            WireType::Null => "null",
            WireType::Bit => "bit",
            WireType::TinyInt => "tinyint",
            WireType::SmallInt => "smallint",
            WireType::Int => "int",
            WireType::BigInt => "bigint",
            WireType::Float => "float",
            WireType::NVarChar => "nvarchar",
            WireType::NVarCharMax => "nvarchar(max)",
            WireType::Date => "date",
            WireType::DateTime2 => "datetime2",
        }
    }
}

fn int_type(len: u8) -> Result<WireType, ClientMessageError> {
    Ok(match len {
        1 => WireType::TinyInt,
        2 => WireType::SmallInt,
        4 => WireType::Int,
        8 => WireType::BigInt,
        _ => return protocol(format!("bad integer length {len}")),
    })
}

fn int_value(bytes: &[u8]) -> i64 {
    match bytes.len() {
        1 => i64::from(bytes[0]),
        2 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
        4 => i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            i64::from_le_bytes(b)
        }
    }
}

const DAY_ZERO: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(d) => d,
    None => panic!("0001-01-01 is a date"),
};

fn decode_date(bytes: &[u8]) -> Result<NaiveDate, ClientMessageError> {
    let days = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]);
    DAY_ZERO
        .checked_add_days(chrono::Days::new(u64::from(days)))
        .ok_or_else(|| ClientMessageError(format!("date out of range ({days} days)")))
}

fn encode_date(date: NaiveDate, out: &mut Vec<u8>) {
    let days = (date - DAY_ZERO).num_days() as u32;
    out.extend_from_slice(&days.to_le_bytes()[..3]);
}

/// Bytes of a time of `scale` (MS-TDS 2.2.5.5.1.8).
fn time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn decode_time(bytes: &[u8], scale: u8) -> Result<NaiveTime, ClientMessageError> {
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    let increments = u64::from_le_bytes(b);
    let nanos = increments.saturating_mul(10u64.pow(9 - u32::from(scale.min(7))));
    let secs = u32::try_from(nanos / 1_000_000_000).unwrap_or(u32::MAX);
    NaiveTime::from_num_seconds_from_midnight_opt(secs, (nanos % 1_000_000_000) as u32)
        .ok_or_else(|| ClientMessageError("time of day out of range".into()))
}

fn encode_time(time: NaiveTime, scale: u8, out: &mut Vec<u8>) {
    let nanos =
        u64::from(time.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(time.nanosecond());
    let increments = nanos / 10u64.pow(9 - u32::from(scale));
    out.extend_from_slice(&increments.to_le_bytes()[..time_len(scale)]);
}

/// Reads one TYPE_INFO plus its value (an RPC parameter, MS-TDS 2.2.6.6).
pub fn read_typed_value(r: &mut Reader<'_>) -> Result<(WireType, Value), ClientMessageError> {
    let ty = r.u8()?;
    match ty {
        TY_NULL => Ok((WireType::Null, Value::Null)),
        TY_INT1 | TY_INT2 | TY_INT4 | TY_INT8 => {
            let len = match ty {
                TY_INT1 => 1,
                TY_INT2 => 2,
                TY_INT4 => 4,
                _ => 8,
            };
            Ok((
                int_type(len)?,
                Value::Int(int_value(r.bytes(usize::from(len))?)),
            ))
        }
        TY_BIT => Ok((WireType::Bit, Value::Bool(r.u8()? != 0))),
        TY_FLT8 => Ok((
            WireType::Float,
            Value::Float(f64::from_le_bytes(r.array()?)),
        )),
        TY_INTN => {
            let declared = int_type(r.u8()?)?;
            match r.u8()? {
                0 => Ok((declared, Value::Null)),
                len => {
                    int_type(len)?;
                    Ok((declared, Value::Int(int_value(r.bytes(usize::from(len))?))))
                }
            }
        }
        TY_BITN => {
            r.u8()?;
            match r.u8()? {
                0 => Ok((WireType::Bit, Value::Null)),
                1 => Ok((WireType::Bit, Value::Bool(r.u8()? != 0))),
                len => protocol(format!("bad bit length {len}")),
            }
        }
        TY_FLTN => {
            r.u8()?;
            match r.u8()? {
                0 => Ok((WireType::Float, Value::Null)),
                4 => Ok((
                    WireType::Float,
                    Value::Float(f64::from(f32::from_le_bytes(r.array()?))),
                )),
                8 => Ok((
                    WireType::Float,
                    Value::Float(f64::from_le_bytes(r.array()?)),
                )),
                len => protocol(format!("bad float length {len}")),
            }
        }
        TY_DATEN => match r.u8()? {
            0 => Ok((WireType::Date, Value::Null)),
            3 => Ok((WireType::Date, Value::Date(decode_date(r.bytes(3)?)?))),
            len => protocol(format!("bad date length {len}")),
        },
        TY_DATETIME2N => {
            let scale = r.u8()?;
            if scale > 7 {
                return protocol(format!("bad datetime2 scale {scale}"));
            }
            match usize::from(r.u8()?) {
                0 => Ok((WireType::DateTime2, Value::Null)),
                len if len == time_len(scale) + 3 => {
                    let time = decode_time(r.bytes(time_len(scale))?, scale)?;
                    let date = decode_date(r.bytes(3)?)?;
                    Ok((WireType::DateTime2, Value::DateTime(date.and_time(time))))
                }
                len => protocol(format!("bad datetime2 length {len} for scale {scale}")),
            }
        }
        TY_NVARCHAR => {
            let max_len = r.u16_le()?;
            r.bytes(COLLATION.len())?;
            if max_len == 0xFFFF {
                Ok((WireType::NVarCharMax, read_plp_string(r)?))
            } else {
                match r.u16_le()? {
                    0xFFFF => Ok((WireType::NVarChar, Value::Null)),
                    len if len > max_len => protocol(format!(
                        "nvarchar of {len} bytes exceeds its maximum {max_len}"
                    )),
                    len => Ok((
                        WireType::NVarChar,
                        Value::String(decode_utf16(r.bytes(usize::from(len))?)?),
                    )),
                }
            }
        }
        other => protocol(format!("unsupported parameter type 0x{other:02X}")),
    }
}

/// A partially length-prefixed (PLP) UTF-16 value: a total length (or
/// unknown/NULL marker), then chunks, each with a 4-byte length, ending with 0.
fn read_plp_string(r: &mut Reader<'_>) -> Result<Value, ClientMessageError> {
    const PLP_NULL: u64 = u64::MAX;
    if r.u64_le()? == PLP_NULL {
        return Ok(Value::Null);
    }
    let mut bytes = Vec::new();
    loop {
        let chunk = r.u32_le()? as usize;
        if chunk == 0 {
            break;
        }
        bytes.extend_from_slice(r.bytes(chunk)?);
    }
    Ok(Value::String(decode_utf16(&bytes)?))
}

/// A result-set column's type (what COLMETADATA declares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    SmallInt,
    Int,
    BigInt,
    Float,
    /// NVARCHAR(n characters), n <= 4000.
    NVarChar(u16),
    Date,
    /// DATETIME2(scale).
    DateTime2(u8),
    /// SQL_VARIANT (what `SERVERPROPERTY` returns), here always holding
    /// an NVARCHAR(128) or NULL.
    Variant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

impl Column {
    pub fn new(name: &str, ty: ColumnType) -> Self {
        Column {
            name: name.to_owned(),
            ty,
        }
    }
}

/// Builds the token stream of one server reply, in the TDS version the
/// session negotiated (7.4 unless told).
#[derive(Debug)]
pub struct TokenWriter {
    buf: Vec<u8>,
    version: TdsVersion,
}

impl Default for TokenWriter {
    fn default() -> Self {
        TokenWriter::for_version(TdsVersion::V7_4)
    }
}

impl TokenWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn for_version(version: TdsVersion) -> Self {
        TokenWriter {
            buf: Vec::new(),
            version,
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn utf16(out: &mut Vec<u8>, s: &str) {
        for unit in s.encode_utf16() {
            out.extend_from_slice(&unit.to_le_bytes());
        }
    }

    fn b_varchar(out: &mut Vec<u8>, s: &str) {
        let units: Vec<u16> = s.encode_utf16().take(255).collect();
        out.push(units.len() as u8);
        for unit in units {
            out.extend_from_slice(&unit.to_le_bytes());
        }
    }

    fn us_varchar(out: &mut Vec<u8>, s: &str) {
        let units: Vec<u16> = s.encode_utf16().take(usize::from(u16::MAX)).collect();
        out.extend_from_slice(&(units.len() as u16).to_le_bytes());
        for unit in units {
            out.extend_from_slice(&unit.to_le_bytes());
        }
    }

    /// A token whose body is preceded by its u16 length.
    fn with_length(&mut self, token: u8, body: &[u8]) {
        self.buf.push(token);
        self.buf
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(body);
    }

    /// LOGINACK, reporting the session's TDS version.
    pub fn login_ack(&mut self, program: &str) {
        let mut body = vec![0x01]; // interface: SQL_TSQL
        body.extend_from_slice(&self.version.0.to_be_bytes());
        Self::b_varchar(&mut body, program);
        body.extend_from_slice(&[16, 0, 0x03, 0xE8]); // program version 16.0.1000
        self.with_length(TOKEN_LOGINACK, &body);
    }

    /// An ENVCHANGE whose values are strings (database, language, packet size).
    pub fn env_change(&mut self, kind: u8, new: &str, old: &str) {
        let mut body = vec![kind];
        Self::b_varchar(&mut body, new);
        Self::b_varchar(&mut body, old);
        self.with_length(TOKEN_ENVCHANGE, &body);
    }

    /// An ENVCHANGE whose values are bytes (B_VARBYTE): the collation, a
    /// transaction descriptor, the reset acknowledgement (both empty).
    pub fn env_change_bytes(&mut self, kind: u8, new: &[u8], old: &[u8]) {
        let mut body = vec![kind];
        for value in [new, old] {
            body.push(value.len().min(255) as u8);
            body.extend_from_slice(&value[..value.len().min(255)]);
        }
        self.with_length(TOKEN_ENVCHANGE, &body);
    }

    /// FEATUREEXTACK for the features a LOGIN7 asked for: this server
    /// acknowledges UTF8_SUPPORT (0x0A: supported, as SQL Server 2019 and
    /// later answer; it sends no varchar, so nothing depends on it) and no
    /// other: SQL Server leaves out what it does not implement.
    pub fn feature_ext_ack(&mut self, requested: &[u8]) {
        const UTF8_SUPPORT: u8 = 0x0A;
        self.buf.push(TOKEN_FEATUREEXTACK);
        if requested.contains(&UTF8_SUPPORT) {
            self.buf.push(UTF8_SUPPORT);
            self.buf.extend_from_slice(&1u32.to_le_bytes());
            self.buf.push(0x01);
        }
        self.buf.push(0xFF);
    }

    /// An INFO message (same layout as ERROR, class 0-10).
    pub fn info(&mut self, number: i32, class: u8, message: &str, server: &str) {
        self.message(TOKEN_INFO, number, class, message, server);
    }

    /// RETURNVALUE of an int output parameter (a prepared statement's handle).
    pub fn return_value_int(&mut self, ordinal: u16, name: &str, value: i32) {
        let b = &mut self.buf;
        b.push(TOKEN_RETURNVALUE);
        b.extend_from_slice(&ordinal.to_le_bytes());
        Self::b_varchar(b, name);
        b.push(0x01); // status: output parameter
        if self.version.is_72_or_later() {
            b.extend_from_slice(&0u32.to_le_bytes());
        } else {
            b.extend_from_slice(&0u16.to_le_bytes());
        }
        b.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
        b.extend_from_slice(&[TY_INTN, 4, 4]);
        b.extend_from_slice(&value.to_le_bytes());
    }

    /// An ERROR message (class 11 and up), from no procedure, line 1.
    pub fn error(&mut self, number: i32, class: u8, message: &str, server: &str) {
        self.message(TOKEN_ERROR, number, class, message, server);
    }

    /// ERROR or INFO (same layout, MS-TDS 2.2.7.10 and 2.2.7.13): state 1, no procedure, line 1.
    fn message(&mut self, token: u8, number: i32, class: u8, message: &str, server: &str) {
        let mut body = Vec::new();
        body.extend_from_slice(&number.to_le_bytes());
        body.extend_from_slice(&[1, class]);
        Self::us_varchar(&mut body, message);
        Self::b_varchar(&mut body, server);
        Self::b_varchar(&mut body, "");
        body.extend_from_slice(&1i32.to_le_bytes());
        self.with_length(token, &body);
    }

    pub fn done(&mut self, token: u8, status: u16, current_command: u16, rows: u64) {
        self.buf.push(token);
        self.buf.extend_from_slice(&status.to_le_bytes());
        self.buf.extend_from_slice(&current_command.to_le_bytes());
        if self.version.is_72_or_later() {
            self.buf.extend_from_slice(&rows.to_le_bytes());
        } else {
            self.buf
                .extend_from_slice(&(rows.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        }
    }

    pub fn return_status(&mut self, status: i32) {
        self.buf.push(TOKEN_RETURNSTATUS);
        self.buf.extend_from_slice(&status.to_le_bytes());
    }

    /// How a column travels in this session's version: before 7.3 there
    /// are no date types, so dates and times go as their text.
    fn on_wire(&self, ty: ColumnType) -> ColumnType {
        match ty {
            ColumnType::Date | ColumnType::DateTime2(_) if !self.version.has_date_types() => {
                ColumnType::NVarChar(27)
            }
            other => other,
        }
    }

    pub fn col_metadata(&mut self, columns: &[Column]) {
        let types: Vec<ColumnType> = columns.iter().map(|c| self.on_wire(c.ty)).collect();
        let long_user_type = self.version.is_72_or_later();
        let b = &mut self.buf;
        b.push(TOKEN_COLMETADATA);
        b.extend_from_slice(&(columns.len() as u16).to_le_bytes());
        for (column, ty) in columns.iter().zip(types) {
            if long_user_type {
                b.extend_from_slice(&0u32.to_le_bytes()); // user type
            } else {
                b.extend_from_slice(&0u16.to_le_bytes());
            }
            b.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
            match ty {
                ColumnType::SmallInt => b.extend_from_slice(&[TY_SMALLINT_N, 2]),
                ColumnType::Int => b.extend_from_slice(&[TY_INTN, 4]),
                ColumnType::BigInt => b.extend_from_slice(&[TY_INTN, 8]),
                ColumnType::Float => b.extend_from_slice(&[TY_FLTN, 8]),
                ColumnType::NVarChar(chars) => {
                    b.push(TY_NVARCHAR);
                    b.extend_from_slice(&(chars * 2).to_le_bytes());
                    b.extend_from_slice(&COLLATION);
                }
                ColumnType::Date => b.push(TY_DATEN),
                ColumnType::DateTime2(scale) => b.extend_from_slice(&[TY_DATETIME2N, scale]),
                ColumnType::Variant => {
                    b.push(TY_SSVARIANT);
                    b.extend_from_slice(&8009u32.to_le_bytes());
                }
            }
            Self::b_varchar(b, &column.name);
        }
    }

    /// One ROW; `values` must match the columns of the last COLMETADATA.
    pub fn row(&mut self, columns: &[Column], values: &[Value]) -> Result<(), ClientMessageError> {
        let types: Vec<ColumnType> = columns.iter().map(|c| self.on_wire(c.ty)).collect();
        let b = &mut self.buf;
        b.push(TOKEN_ROW);
        for (ty, value) in types.into_iter().zip(values) {
            let text;
            let value = match (ty, value) {
                (ColumnType::NVarChar(_), Value::Date(d)) => {
                    text = Value::String(d.format("%Y-%m-%d").to_string());
                    &text
                }
                (ColumnType::NVarChar(_), Value::DateTime(dt)) => {
                    text = Value::String(dt.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
                    &text
                }
                _ => value,
            };
            match (ty, value) {
                (ColumnType::NVarChar(_), Value::Null) => {
                    b.extend_from_slice(&0xFFFFu16.to_le_bytes())
                }
                (ColumnType::Variant, Value::Null) => b.extend_from_slice(&0u32.to_le_bytes()),
                (_, Value::Null) => b.push(0),
                (ColumnType::SmallInt, Value::Int(v)) => {
                    let v = i16::try_from(*v)
                        .map_err(|_| ClientMessageError(format!("{v} overflows smallint")))?;
                    b.push(2);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (ColumnType::Variant, Value::String(s)) => {
                    // The base type's TYPE_INFO without its type byte:
                    // NVARCHAR's max length and collation (7 bytes).
                    let mut text = Vec::new();
                    Self::utf16(&mut text, s);
                    b.extend_from_slice(&((2 + 7 + text.len()) as u32).to_le_bytes());
                    b.extend_from_slice(&[TY_NVARCHAR, 7]);
                    b.extend_from_slice(&256u16.to_le_bytes());
                    b.extend_from_slice(&COLLATION);
                    b.extend_from_slice(&text);
                }
                (ColumnType::Int, Value::Int(v)) => {
                    let v = i32::try_from(*v)
                        .map_err(|_| ClientMessageError(format!("{v} overflows int")))?;
                    b.push(4);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (ColumnType::BigInt, Value::Int(v)) => {
                    b.push(8);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (ColumnType::Float, Value::Float(v)) => {
                    b.push(8);
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (ColumnType::NVarChar(_), Value::String(s)) => {
                    let mut text = Vec::new();
                    Self::utf16(&mut text, s);
                    b.extend_from_slice(&(text.len() as u16).to_le_bytes());
                    b.extend_from_slice(&text);
                }
                (ColumnType::Date, Value::Date(d)) => {
                    b.push(3);
                    encode_date(*d, b);
                }
                (ColumnType::DateTime2(scale), Value::DateTime(dt)) => {
                    b.push((time_len(scale) + 3) as u8);
                    encode_time(dt.time(), scale, b);
                    encode_date(dt.date(), b);
                }
                (ty, value) => return protocol(format!("cannot send {value:?} as {ty:?}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_round_trip_through_their_wire_form() {
        let dt = NaiveDate::from_ymd_opt(2025, 11, 23)
            .and_then(|d| d.and_hms_milli_opt(13, 45, 7, 250))
            .expect("valid");
        for scale in [0u8, 3, 7] {
            let mut out = Vec::new();
            encode_time(dt.time(), scale, &mut out);
            assert_eq!(out.len(), time_len(scale));
            let back = decode_time(&out, scale).expect("decode");
            let expected = if scale == 0 {
                dt.time().with_nanosecond(0).expect("t")
            } else {
                dt.time()
            };
            assert_eq!(back, expected, "scale {scale}");
        }
        let mut out = Vec::new();
        encode_date(dt.date(), &mut out);
        assert_eq!(decode_date(&out).expect("date"), dt.date());
    }

    #[test]
    fn the_version_is_negotiated_down_to_the_clients() {
        for (client, negotiated) in [
            (0x7100_0001, TdsVersion::V7_1),
            (0x0701_0000, TdsVersion::V7_1),
            (0x7209_0002, TdsVersion::V7_2),
            (0x730A_0003, TdsVersion::V7_3A),
            (0x730B_0003, TdsVersion::V7_3B),
            (0x7400_0004, TdsVersion::V7_4),
            (0x7500_0000, TdsVersion::V7_4),
            (0x0800_0000, TdsVersion::V8_0),
        ] {
            assert_eq!(TdsVersion::negotiate(client), negotiated, "{client:#010x}");
        }
        // Before 7.2, DONE's row count is 4 bytes; from 7.2 on, 8.
        for (version, len) in [
            (TdsVersion::V7_1, 9),
            (TdsVersion::V7_2, 13),
            (TdsVersion::V8_0, 13),
        ] {
            let mut w = TokenWriter::for_version(version);
            w.done(TOKEN_DONE, DONE_COUNT, 0xC1, 3);
            assert_eq!(w.into_bytes().len(), len, "{version:?}");
        }
    }

    #[test]
    fn a_truncated_message_is_a_protocol_error_not_a_panic() {
        let mut r = Reader::new(&[TY_NVARCHAR, 0x40]);
        assert!(read_typed_value(&mut r).is_err());
        let mut r = Reader::new(&[TY_INTN, 4, 4, 1]);
        assert!(read_typed_value(&mut r).is_err());
        let mut r = Reader::new(&[0x99]);
        assert_eq!(
            read_typed_value(&mut r),
            Err(ClientMessageError("unsupported parameter type 0x99".into()))
        );
    }
}
