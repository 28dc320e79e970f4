//! Client messages, decoded: PRELOGIN, LOGIN7, SQL batch and RPC requests.

use super::wire::{ClientMessageError, Reader, Value, WireType, decode_utf16, read_typed_value};

/// PRELOGIN option tokens (MS-TDS 2.2.6.5).
const PL_VERSION: u8 = 0x00;
const PL_ENCRYPTION: u8 = 0x01;
const PL_INSTOPT: u8 = 0x02;
const PL_THREADID: u8 = 0x03;
const PL_MARS: u8 = 0x04;
const PL_TERMINATOR: u8 = 0xFF;

/// What the client asked for in PRELOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelogin {
    pub encryption: u8,
}

pub fn parse_prelogin(payload: &[u8]) -> Result<Prelogin, ClientMessageError> {
    let mut r = Reader::new(payload);
    let mut encryption = None;
    loop {
        let token = r.u8()?;
        if token == PL_TERMINATOR {
            break;
        }
        let offset = usize::from(r.u16_be()?);
        let length = usize::from(r.u16_be()?);
        if token == PL_ENCRYPTION && length >= 1 {
            encryption = Some(Reader::at(payload, offset).u8()?);
        }
    }
    Ok(Prelogin {
        encryption: encryption
            .ok_or_else(|| ClientMessageError("PRELOGIN has no ENCRYPTION option".into()))?,
    })
}

/// The server's PRELOGIN response: version 16.0.1000, and `encryption`
/// (the ENCRYPTION byte negotiated, [`super::tls::Negotiated`]).
pub fn prelogin_response(encryption: u8) -> Vec<u8> {
    let options: [(u8, Vec<u8>); 5] = [
        (PL_VERSION, vec![16, 0, 0x03, 0xE8, 0, 0]),
        (PL_ENCRYPTION, vec![encryption]),
        (PL_INSTOPT, vec![0]),
        (PL_THREADID, Vec::new()),
        (PL_MARS, vec![0]),
    ];
    let header_len = options.len() * 5 + 1;
    let mut header = Vec::new();
    let mut data = Vec::new();
    for (token, value) in &options {
        header.push(*token);
        header.extend_from_slice(&((header_len + data.len()) as u16).to_be_bytes());
        header.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    header.push(PL_TERMINATOR);
    header.extend_from_slice(&data);
    header
}

/// What LOGIN7 carries that the server checks (MS-TDS 2.2.6.4).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
    pub app_name: String,
    pub packet_size: u32,
    /// The TDS version the client speaks (LOGIN7's TDSVersion, little-endian).
    pub tds_version: u32,
    /// The client asked for feature extensions (OptionFlags3's fExtension):
    /// the server then answers with a FEATUREEXTACK.
    pub feature_ext: bool,
    /// The ids of the features it asked for (FeatureExt, MS-TDS 2.2.6.4).
    pub features: Vec<u8>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("app_name", &self.app_name)
            .finish()
    }
}

pub fn parse_login7(payload: &[u8]) -> Result<Login, ClientMessageError> {
    let mut r = Reader::new(payload);
    let _length = r.u32_le()?;
    let tds_version = r.u32_le()?;
    let packet_size = r.u32_le()?;
    r.bytes(4 + 4 + 4)?; // prog version, pid, connection id
    let [_flags1, _flags2, _type_flags, flags3] = r.array::<4>()?;
    r.bytes(4 + 4)?; // timezone, lcid
    // Offset/length pairs, lengths in UTF-16 code units, offsets from the message start.
    let mut field = || -> Result<(usize, usize), ClientMessageError> {
        Ok((usize::from(r.u16_le()?), usize::from(r.u16_le()?)))
    };
    let _host = field()?;
    let user = field()?;
    let password = field()?;
    let app_name = field()?;
    let _server = field()?;
    let extension = field()?;
    let _client_interface = field()?;
    let _language = field()?;
    let database = field()?;
    let text = |(offset, len): (usize, usize)| Reader::at(payload, offset).utf16(len);
    // The password is obfuscated: every byte had its nibbles swapped, then was
    // XORed with 0xA5. Undo both.
    let (offset, len) = password;
    let hidden = Reader::at(payload, offset).bytes(len * 2)?;
    let plain: Vec<u8> = hidden.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect();
    let feature_ext = flags3 & 0x10 != 0;
    let features = if feature_ext {
        // ibExtension points at a DWORD: the offset of the FeatureExt block.
        let at = Reader::at(payload, extension.0).u32_le()? as usize;
        feature_ids(payload, at)?
    } else {
        Vec::new()
    };
    Ok(Login {
        user: text(user)?,
        password: decode_utf16(&plain)?,
        database: text(database)?,
        app_name: text(app_name)?,
        packet_size,
        tds_version,
        feature_ext,
        features,
    })
}

/// The feature ids of a FeatureExt block: (id, length, data) until 0xFF.
fn feature_ids(payload: &[u8], at: usize) -> Result<Vec<u8>, ClientMessageError> {
    let mut r = Reader::at(payload, at);
    let mut ids = Vec::new();
    loop {
        match r.u8()? {
            0xFF => return Ok(ids),
            id => {
                let len = r.u32_le()? as usize;
                r.bytes(len)?;
                ids.push(id);
            }
        }
    }
}

/// Skips ALL_HEADERS (MS-TDS 2.2.5.3), present in batch and RPC requests.
fn skip_all_headers(r: &mut Reader<'_>) -> Result<(), ClientMessageError> {
    let total = r.u32_le()? as usize;
    if total < 4 {
        return Err(ClientMessageError(format!("ALL_HEADERS length {total}")));
    }
    r.bytes(total - 4)?;
    Ok(())
}

/// A SQL batch's text. `headers`: the request starts with ALL_HEADERS, as
/// it does from TDS 7.2 on (a 7.1 client sends none).
pub fn parse_sql_batch(payload: &[u8], headers: bool) -> Result<String, ClientMessageError> {
    let mut r = Reader::new(payload);
    if headers {
        skip_all_headers(&mut r)?;
    }
    decode_utf16(r.bytes(payload.len() - r.position())?)
}

/// One RPC parameter as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub wire_type: WireType,
    pub value: Value,
    /// Passed by reference (an OUTPUT parameter).
    pub output: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Procedure {
    Id(u16),
    Name(String),
}

/// The well-known procedure ids (MS-TDS 2.2.6.6) of what this server runs.
pub const SP_EXECUTESQL: u16 = 10;
pub const SP_PREPARE: u16 = 11;
pub const SP_EXECUTE: u16 = 12;
pub const SP_PREPEXEC: u16 = 13;
pub const SP_UNPREPARE: u16 = 15;

impl Procedure {
    /// The system procedure this names, by id or by name (`sp_executesql`,
    /// `sys.sp_executesql`, `[sys].[sp_executesql]`, any case), as the id;
    /// `sp_reset_connection` as 0; `None` for any other procedure.
    pub fn system_id(&self) -> Option<u16> {
        match self {
            Procedure::Id(id) => Some(*id),
            Procedure::Name(name) => {
                let lower = name.to_ascii_lowercase().replace(['[', ']'], "");
                let bare = lower.strip_prefix("master.").unwrap_or(&lower);
                let bare = ["sys.", "dbo.", "."]
                    .iter()
                    .find_map(|schema| bare.strip_prefix(schema))
                    .unwrap_or(bare);
                Some(match bare {
                    "sp_executesql" => SP_EXECUTESQL,
                    "sp_prepare" => SP_PREPARE,
                    "sp_execute" => SP_EXECUTE,
                    "sp_prepexec" => SP_PREPEXEC,
                    "sp_unprepare" => SP_UNPREPARE,
                    "sp_reset_connection" => 0,
                    _ => return None,
                })
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    pub procedure: Procedure,
    pub params: Vec<Param>,
}

/// An RPC request; `headers` as for [`parse_sql_batch`].
pub fn parse_rpc(payload: &[u8], headers: bool) -> Result<RpcRequest, ClientMessageError> {
    let mut r = Reader::new(payload);
    if headers {
        skip_all_headers(&mut r)?;
    }
    let name_len = r.u16_le()?;
    let procedure = if name_len == 0xFFFF {
        Procedure::Id(r.u16_le()?)
    } else {
        Procedure::Name(r.utf16(usize::from(name_len))?)
    };
    let _options = r.u16_le()?;
    let mut params = Vec::new();
    while !r.is_empty() {
        let name = r.b_varchar()?;
        let status = r.u8()?;
        let (wire_type, value) = read_typed_value(&mut r)?;
        params.push(Param {
            name,
            wire_type,
            value,
            output: status & 0x01 != 0,
        });
    }
    Ok(RpcRequest { procedure, params })
}

#[cfg(test)]
mod tests {
    use super::super::tls::{ENCRYPT_NOT_SUP, ENCRYPT_REQ};
    use super::*;

    #[test]
    fn the_prelogin_response_parses_as_a_prelogin() {
        for encryption in [ENCRYPT_NOT_SUP, ENCRYPT_REQ] {
            let parsed = parse_prelogin(&prelogin_response(encryption)).expect("parse");
            assert_eq!(parsed.encryption, encryption);
        }
    }
}
