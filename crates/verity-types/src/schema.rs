//! OpenAPI schemas of the types that serialize by hand: the API document describes exactly the
//! strings these types write and accept.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::{Address, Hash};

fn hex_string(pattern: &str, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

impl PartialSchema for Hash {
    fn schema() -> RefOr<Schema> {
        hex_string(
            "^(0x)?[0-9a-fA-F]{64}$",
            "A SHA-256 digest: 0x and 64 hex digits (written lower-case; 0x optional when read)",
        )
    }
}

impl ToSchema for Hash {}

impl PartialSchema for Address {
    fn schema() -> RefOr<Schema> {
        hex_string(
            "^(0x)?[0-9a-fA-F]{40}$",
            "An account address: 0x and 40 hex digits (written EIP-55 checksummed)",
        )
    }
}

impl ToSchema for Address {}

/// An amount in base units (10^18 per token) as a decimal string: JSON numbers lose precision
/// above 2^53. For `#[schema(schema_with = ...)]` on amount fields.
pub fn amount() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9]{1,39}$"))
        .description(Some("Base units (10^18 per token), as a decimal string"))
}

/// Bytes as lower-case hex without a prefix (`serde_hex`). For `schema_with`.
pub fn hex_bytes() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^(0x)?([0-9a-fA-F]{2})*$"))
        .description(Some("Bytes as hex"))
}
