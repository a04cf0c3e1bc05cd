//! The SHA-256 of an upload, so tests can compare it with what the client sent.
use sha2::{Digest, Sha256};

/// The digest of `bytes` as 64 lower-case hex digits.
pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::hex_digest;

    #[test]
    fn the_digest_matches_the_published_test_vectors() {
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
