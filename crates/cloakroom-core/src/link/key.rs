//! [`LinkKey`]: the one thing core needs from a crypto backend, as a trait.

use std::fmt;

/// The signature algorithms a link token may use.
///
/// An enum, not a string: `none`, `HS256` and every algorithm Cloakroom does not sign with
/// have no value here, so no key can claim them and no header naming them gets as far as a
/// key lookup (RFC 8725 §3.1, "perform algorithm verification").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkAlgorithm {
    /// Ed25519 (`EdDSA`, RFC 8037).
    EdDsa,
}

impl LinkAlgorithm {
    /// The JOSE name, as the `alg` header spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm a JOSE `alg` names, if Cloakroom signs links with it.
    pub(crate) fn from_jose(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// A signing failure reported by a [`LinkKey`] (a hardware module that is unreachable, say).
#[derive(Debug, thiserror::Error)]
#[error("the link-signing key failed to sign")]
pub struct SigningError(#[source] pub crate::store::BoxError);

/// A key that signs and verifies link tokens.
///
/// Core has no crypto backend on purpose: an app that embeds Cloakroom brings its own (the
/// Cloakroom server implements this with `ed25519-dalek`), and core cannot end up with two
/// backends or none. What the trait asks for is deliberately small — bytes in, bytes out —
/// and everything around it (the JOSE header, base64url, size limits, claim checks) is core's,
/// so every backend gets the same strict parsing.
///
/// Keys used for links must be dedicated to them: a key that also signs other tokens (the
/// server's service JWTs) would let one kind of token be replayed as another if any check
/// were ever missed. The `typ` and purpose claims stop that too; separate keys make it hold
/// even if they did not.
pub trait LinkKey: Send + Sync + fmt::Debug {
    /// The key id, as the `kid` header carries it: 1 to [`MAX_KID_LEN`](super::MAX_KID_LEN)
    /// characters of the base64url alphabet. A key with another id cannot mint.
    fn kid(&self) -> &str;

    /// The one algorithm this key signs with. A token naming another algorithm under this
    /// key's id is refused before the signature is looked at.
    fn algorithm(&self) -> LinkAlgorithm;

    /// Signs `message` (the JWS signing input), returning the raw signature.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError>;

    /// Whether `signature` is this key's valid signature of `message`. Must not panic on a
    /// signature of the wrong length or shape: it comes from the network.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool;
}
