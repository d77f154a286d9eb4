//! PD's timestamp oracle: one `Tso` request over PD's gRPC stream
//! (`pdpb.PD/Tso`), through any member.
//!
//! The messages are the few `pdpb` ones the call needs, with kvproto's
//! field numbers and types (`proto/pdpb.proto`); a test compares them with
//! the `.proto` of both kvproto trees PD pins, in `../shared/sources`, so a
//! drift fails there rather than on the wire.

use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;

/// `pdpb.RequestHeader`, the fields both kvproto trees have (v26's adds
/// `caller_id` and `caller_component`, which PD does not require).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub sender_id: u64,
}

/// `pdpb.Error`; `type` is the `ErrorType` enum's number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PdError {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `pdpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(message, optional, tag = "2")]
    pub error: Option<PdError>,
}

/// `pdpb.TsoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TsoRequest {
    #[prost(message, optional, tag = "1")]
    pub header: Option<RequestHeader>,
    #[prost(uint32, tag = "2")]
    pub count: u32,
    #[prost(string, tag = "3")]
    pub dc_location: String,
}

/// `pdpb.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub physical: i64,
    #[prost(int64, tag = "2")]
    pub logical: i64,
    #[prost(uint32, tag = "3")]
    pub suffix_bits: u32,
}

/// `pdpb.TsoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TsoResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(uint32, tag = "2")]
    pub count: u32,
    #[prost(message, optional, tag = "3")]
    pub timestamp: Option<Timestamp>,
}

/// The metadata key that makes a PD follower forward a request to the
/// host it names (`pkg/utils/grpcutil` `ForwardMetadataKey`).
pub const FORWARD_METADATA_KEY: &str = "pd-forwarded-host";

#[derive(Debug, thiserror::Error)]
pub enum TsoError {
    #[error("PD {endpoint}: {what}")]
    Transport { endpoint: String, what: String },
    #[error("PD {endpoint}: timed out after {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("PD {endpoint}: {message}")]
    Refused { endpoint: String, message: String },
}

/// A channel to one member, dialed on first use and reused for every
/// later request.
pub fn channel(endpoint: &str) -> Result<tonic::transport::Channel, TsoError> {
    Ok(
        tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| TsoError::Transport {
                endpoint: endpoint.to_string(),
                what: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy(),
    )
}

/// One timestamp from PD, through `channel` to `endpoint` (a member's
/// client URL). `forward_to` is the PD leader's client URL when
/// `endpoint` is not the leader: PD then forwards the request, as its own
/// client does.
pub async fn get_ts(
    channel: tonic::transport::Channel,
    endpoint: &str,
    cluster_id: u64,
    forward_to: Option<&str>,
    timeout: Duration,
) -> Result<Timestamp, TsoError> {
    tokio::time::timeout(timeout, ask(channel, endpoint, cluster_id, forward_to))
        .await
        .map_err(|_| TsoError::Timeout {
            endpoint: endpoint.to_string(),
            timeout,
        })?
}

async fn ask(
    channel: tonic::transport::Channel,
    endpoint: &str,
    cluster_id: u64,
    forward_to: Option<&str>,
) -> Result<Timestamp, TsoError> {
    let transport = |what: String| TsoError::Transport {
        endpoint: endpoint.to_string(),
        what,
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| transport(format!("not ready: {e}")))?;
    let request = TsoRequest {
        header: Some(RequestHeader {
            cluster_id,
            sender_id: 0,
        }),
        count: 1,
        dc_location: String::new(),
    };
    // The send side stays open until the answer is read: a follower that
    // forwards the request ends the stream at the client's EOF, before
    // the leader's answer comes back (`server/grpc_service.go` `Tso`).
    // Dropping the call afterwards cancels it.
    use tokio_stream::StreamExt;
    let requests = tokio_stream::once(request).chain(tokio_stream::pending());
    let mut call = tonic::Request::new(requests);
    if let Some(leader) = forward_to {
        let value = leader
            .parse()
            .map_err(|_| transport(format!("bad forward host {leader:?}")))?;
        call.metadata_mut().insert(FORWARD_METADATA_KEY, value);
    }
    let codec = tonic_prost::ProstCodec::<TsoRequest, TsoResponse>::default();
    let response = grpc
        .streaming(call, PathAndQuery::from_static("/pdpb.PD/Tso"), codec)
        .await
        .map_err(|status| TsoError::Refused {
            endpoint: endpoint.to_string(),
            message: status.message().to_string(),
        })?;
    let mut stream = response.into_inner();
    let answer = stream
        .message()
        .await
        .map_err(|status| TsoError::Refused {
            endpoint: endpoint.to_string(),
            message: status.message().to_string(),
        })?
        .ok_or_else(|| transport("the stream ended without an answer".into()))?;
    if let Some(error) = answer.header.and_then(|h| h.error) {
        return Err(TsoError::Refused {
            endpoint: endpoint.to_string(),
            message: error.message,
        });
    }
    answer
        .timestamp
        .ok_or_else(|| transport("an answer without a timestamp".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// `name -> (type, tag)` of one message in a `.proto` file.
    fn proto_fields(proto: &str, message: &str) -> BTreeMap<String, (String, u32)> {
        let start = proto
            .find(&format!("message {message} {{"))
            .unwrap_or_else(|| panic!("no message {message}"));
        let body = &proto[start..];
        let body = &body[..body.find("\n}").unwrap_or(body.len())];
        body.lines()
            .skip(1)
            .filter_map(|line| {
                let line = line.split("//").next()?.trim();
                let (decl, tag) = line.trim_end_matches(';').split_once('=')?;
                let mut words = decl.split_whitespace();
                let (ty, name) = (words.next()?, words.next()?);
                Some((name.to_string(), (ty.to_string(), tag.trim().parse().ok()?)))
            })
            .collect()
    }

    /// (name, type, tag) of one message's fields.
    type Fields = Vec<(&'static str, &'static str, u32)>;

    fn expected() -> Vec<(&'static str, Fields)> {
        vec![
            (
                "RequestHeader",
                vec![("cluster_id", "uint64", 1), ("sender_id", "uint64", 2)],
            ),
            (
                "ResponseHeader",
                vec![("cluster_id", "uint64", 1), ("error", "Error", 2)],
            ),
            (
                "Error",
                vec![("type", "ErrorType", 1), ("message", "string", 2)],
            ),
            (
                "TsoRequest",
                vec![
                    ("header", "RequestHeader", 1),
                    ("count", "uint32", 2),
                    ("dc_location", "string", 3),
                ],
            ),
            (
                "Timestamp",
                vec![
                    ("physical", "int64", 1),
                    ("logical", "int64", 2),
                    ("suffix_bits", "uint32", 3),
                ],
            ),
            (
                "TsoResponse",
                vec![
                    ("header", "ResponseHeader", 1),
                    ("count", "uint32", 2),
                    ("timestamp", "Timestamp", 3),
                ],
            ),
        ]
    }

    /// The messages above match `pdpb.proto` of both kvproto trees PD
    /// pins; without `../shared/sources` there is nothing to compare.
    #[test]
    fn the_messages_match_kvproto() {
        let dir = crate::engine::gobuild::sources_dir();
        if !dir.is_dir() {
            eprintln!("no PD sources at {}: nothing to compare", dir.display());
            return;
        }
        let mut compared = 0;
        for release in crate::engine::gobuild::PD_RELEASES {
            let tarball = dir.join(format!("{}.tar.gz", release.kvproto.stem));
            let Ok(file) = std::fs::File::open(&tarball) else {
                continue;
            };
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            let mut proto = String::new();
            for entry in archive.entries().expect("tar entries") {
                let mut entry = entry.expect("tar entry");
                let path = entry.path().expect("entry path").to_path_buf();
                if path.ends_with("proto/pdpb.proto") {
                    std::io::Read::read_to_string(&mut entry, &mut proto).expect("read pdpb.proto");
                    break;
                }
            }
            assert!(
                !proto.is_empty(),
                "no proto/pdpb.proto in {}",
                tarball.display()
            );
            for (message, fields) in expected() {
                let found = proto_fields(&proto, message);
                for (name, ty, tag) in fields {
                    assert_eq!(
                        found.get(name),
                        Some(&(ty.to_string(), tag)),
                        "{message}.{name} in {}",
                        tarball.display()
                    );
                }
            }
            compared += 1;
        }
        assert_eq!(
            compared,
            crate::engine::gobuild::PD_RELEASES.len(),
            "kvproto trees compared"
        );
    }
}
