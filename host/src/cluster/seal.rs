//! Redis is a boundary: whoever can write to it must not steer a replica, and whoever can read
//! it must learn no secret. What replicas keep there that Redis must not read is sealed
//! ([`Sealer`]: AES-256-GCM under a key derived from operator material and a purpose label, a
//! random nonce per value, the value's Redis key as associated data, so a value copied under
//! another key does not open); what they act on that Redis may read is tagged ([`Tagger`]:
//! HMAC-SHA256, bound to the key or channel); names derived from identities are keyed digests.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// AES-256-GCM under one derived key.
pub(super) struct Sealer(LessSafeKey);

impl Sealer {
    /// The key for `purpose` derived from `material` (a variable's value).
    pub(super) fn new(purpose: &[u8], material: &[u8]) -> Option<Self> {
        let mut derived = Sha256::new();
        derived.update(purpose);
        derived.update(material);
        let key = UnboundKey::new(&AES_256_GCM, &derived.finalize()).ok()?;
        Some(Self(LessSafeKey::new(key)))
    }

    /// `plain`, sealed for the Redis key `entry`, as base64.
    pub(super) fn seal(&self, entry: &str, mut plain: Vec<u8>) -> Option<String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(entry.as_bytes()),
                &mut plain,
            )
            .ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend(plain);
        Some(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// What `sealed` holds, if it opens for `entry` under this key.
    pub(super) fn open(&self, entry: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        let (nonce, data) = bytes.split_at_checked(NONCE_LEN)?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(entry.as_bytes()),
                &mut data,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

/// What replicas act on that Redis may read but must not write: HMAC-SHA256 tags under a key
/// derived from operator material and a purpose label, each bound to the record's Redis key
/// (or channel), so a value copied under another key does not verify; and keyed digests, so a
/// key name confirms nothing to whoever guesses what it was made from.
pub(super) struct Tagger(hmac::Hmac<Sha256>);

impl Tagger {
    /// The key for `purpose` derived from `material`.
    pub(super) fn new(purpose: &[u8], material: &[u8]) -> Self {
        use hmac::Mac as _;
        let mut derived = Sha256::new();
        derived.update(purpose);
        derived.update(material);
        Self(
            hmac::Hmac::<Sha256>::new_from_slice(&derived.finalize())
                .expect("HMAC takes any key length"),
        )
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Hmac<Sha256> {
        use hmac::Mac as _;
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// `value`, tagged for the Redis key `entry`: `value|tag`.
    pub(super) fn sign(&self, entry: &str, value: &str) -> String {
        use hmac::Mac as _;
        let tag = self
            .mac(&[entry.as_bytes(), value.as_bytes()])
            .finalize()
            .into_bytes();
        format!(
            "{value}|{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The value `signed` carries, if its tag verifies for `entry` under this key.
    pub(super) fn verify<'a>(&self, entry: &str, signed: &'a str) -> Option<&'a str> {
        use hmac::Mac as _;
        let (value, tag) = signed.rsplit_once('|')?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .ok()?;
        self.mac(&[entry.as_bytes(), value.as_bytes()])
            .verify_slice(&tag)
            .ok()?;
        Some(value)
    }

    /// A keyed digest of `parts` (hex), for key names.
    pub(super) fn digest(&self, parts: &[&[u8]]) -> String {
        use hmac::Mac as _;
        hex::encode(self.mac(parts).finalize().into_bytes())
    }
}

/// Milliseconds since the Unix epoch, for freshness stamps.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_its_value_under_its_entry_and_key() {
        let t = Tagger::new(b"test\0", b"k".repeat(32).as_slice());
        let signed = t.sign("p:replica:a", "http://10.0.0.1:8080/ 1700000000000");
        assert_eq!(
            t.verify("p:replica:a", &signed),
            Some("http://10.0.0.1:8080/ 1700000000000")
        );
        assert_eq!(t.verify("p:replica:b", &signed), None, "another key name");
        let other = Tagger::new(b"test\0", b"o".repeat(32).as_slice());
        assert_eq!(
            other.verify("p:replica:a", &signed),
            None,
            "another cluster key"
        );
        let forged = signed.replace("10.0.0.1", "10.0.0.2");
        assert_eq!(t.verify("p:replica:a", &forged), None, "an altered value");
        for junk in ["", "|", "value", "value|", "value|!!!"] {
            assert_eq!(t.verify("p:replica:a", junk), None, "{junk:?}");
        }
        assert_ne!(t.digest(&[b"a", b"bc"]), t.digest(&[b"ab", b"c"]));
    }
}
