//! The cryptography of KMS keys, pure: key material wrapped by the master key, and ciphertext
//! blobs that name their key and key material version.
//!
//! Every AEAD here is XChaCha20-Poly1305 (the RustCrypto `chacha20poly1305` crate) with a random
//! 24-byte nonce, so nonces never need coordinating across processes or restarts.
//!
//! - **Key material** (32 random bytes per key version) is stored wrapped by the master key, with
//!   the key's ARN and the version as associated data: wrapped material cannot be moved to another
//!   key or version.
//! - **Ciphertext blobs** ([`Blob`]) are self-describing: a format byte, the key id, the key
//!   material version, the nonce, then the sealed bytes. The header and the encryption context
//!   (sorted by key, length-prefixed) are the associated data, so a blob opens only with its own
//!   key version and the exact context it was sealed with, and a changed header fails to open.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;

/// Length of the master key and of every key material version.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The blob format this code writes (and the only one it reads).
const BLOB_FORMAT: u8 = 1;

/// The master key of the data dir: wraps every key's material.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// A master key of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the master key must be {KEY_LEN} bytes, not {0}")]
pub struct BadMasterKey(pub usize);

/// Sealed bytes that do not open: another key, another context, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ciphertext does not open")]
pub struct Unopenable;

/// Fresh random bytes from the thread's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rand::rng().fill(out.as_mut_slice());
    out
}

fn seal(key: &XChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let nonce = random_bytes(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&nonce);
    // Encryption fails only beyond the cipher's message limit (256 GiB); inputs here are KiBs.
    let sealed = key
        .encrypt(
            &XNonce::from(n),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    (nonce, sealed)
}

fn open(
    key: &XChaCha20Poly1305,
    nonce: &[u8],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, Unopenable> {
    let n: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Unopenable)?;
    key.decrypt(&XNonce::from(n), Payload { msg: sealed, aad })
        .map_err(|_| Unopenable)
}

fn purpose_aad(purpose: &str) -> Vec<u8> {
    format!("gantry-sealed:v1:{purpose}").into_bytes()
}

fn material_aad(key_arn: &str, version: u32) -> Vec<u8> {
    format!("gantry-kms-material:v1:{key_arn}:{version}").into_bytes()
}

impl MasterKey {
    /// The master key from its bytes (exactly [`KEY_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, BadMasterKey> {
        let cipher =
            XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| BadMasterKey(bytes.len()))?;
        Ok(Self { cipher })
    }

    /// New key material for version `version` of `key_arn`, wrapped: nonce then sealed bytes.
    pub fn new_material(&self, key_arn: &str, version: u32) -> Vec<u8> {
        let material = random_bytes(KEY_LEN);
        let (mut out, sealed) = seal(&self.cipher, &material, &material_aad(key_arn, version));
        out.extend_from_slice(&sealed);
        out
    }

    /// Seals `plaintext` for another part of the server (access key secrets, session tokens),
    /// bound to `purpose` (associated data, in a namespace apart from key material): nonce then
    /// sealed bytes.
    pub fn seal_for(&self, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let (mut out, sealed) = seal(&self.cipher, plaintext, &purpose_aad(purpose));
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`MasterKey::seal_for`] sealed for the same `purpose`.
    pub fn open_for(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, Unopenable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unopenable);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        open(&self.cipher, nonce, body, &purpose_aad(purpose))
    }

    /// The cipher of wrapped material made by [`MasterKey::new_material`] for the same key and
    /// version.
    pub fn unwrap_material(
        &self,
        key_arn: &str,
        version: u32,
        wrapped: &[u8],
    ) -> Result<DataCipher, Unopenable> {
        if wrapped.len() < NONCE_LEN {
            return Err(Unopenable);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let material = open(&self.cipher, nonce, sealed, &material_aad(key_arn, version))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&material).map_err(|_| Unopenable)?;
        Ok(DataCipher { cipher })
    }
}

/// One version of one key's material, unwrapped, ready to seal and open blobs.
pub struct DataCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for DataCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataCipher(..)")
    }
}

/// The encryption context as associated data: pairs sorted by key, each part length-prefixed,
/// so no two contexts share an encoding.
fn context_aad(context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// A parsed ciphertext blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob<'a> {
    /// The id of the key that sealed it.
    pub key_id: &'a str,
    /// The version of that key's material.
    pub version: u32,
    header: &'a [u8],
    nonce: &'a [u8],
    sealed: &'a [u8],
}

impl<'a> Blob<'a> {
    /// Reads the header of `bytes`; `None` when it is not a blob of this format.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != BLOB_FORMAT {
            return None;
        }
        let (&id_len, rest) = rest.split_first()?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 4 + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = rest.split_at(id_len);
        let key_id = std::str::from_utf8(id).ok()?;
        let (version, rest) = rest.split_at(4);
        let version = u32::from_be_bytes(version.try_into().ok()?);
        let header = &bytes[..2 + id_len + 4];
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        Some(Self {
            key_id,
            version,
            header,
            nonce,
            sealed,
        })
    }

    /// The plaintext, when `cipher` is this blob's key version and `context` its context.
    pub fn open(
        &self,
        cipher: &DataCipher,
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, Unopenable> {
        let mut aad = self.header.to_vec();
        aad.extend_from_slice(&context_aad(context));
        open(&cipher.cipher, self.nonce, self.sealed, &aad)
    }
}

impl DataCipher {
    /// Seals `plaintext` into a blob naming `key_id` and `version`, bound to `context`.
    ///
    /// # Panics
    /// Never for key ids of KMS (UUIDs); a key id over 255 bytes would be a caller bug.
    pub fn seal_blob(
        &self,
        key_id: &str,
        version: u32,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Vec<u8> {
        let id_len = u8::try_from(key_id.len()).unwrap_or(u8::MAX);
        let mut header = Vec::with_capacity(2 + key_id.len() + 4);
        header.push(BLOB_FORMAT);
        header.push(id_len);
        header.extend_from_slice(&key_id.as_bytes()[..usize::from(id_len)]);
        header.extend_from_slice(&version.to_be_bytes());
        let mut aad = header.clone();
        aad.extend_from_slice(&context_aad(context));
        let (nonce, sealed) = seal(&self.cipher, plaintext, &aad);
        let mut out = header;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }
}

/// The size of a blob sealing `plaintext_len` bytes under a key id of `key_id_len` bytes.
pub fn blob_len(key_id_len: usize, plaintext_len: usize) -> usize {
    2 + key_id_len + 4 + NONCE_LEN + plaintext_len + TAG_LEN
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ARN: &str = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sealed_values_open_only_for_their_purpose_and_key() {
        let m = MasterKey::new(&[7u8; 32]).unwrap();
        let sealed = m.seal_for("iam-access-key-secret:AKIA1", b"secret");
        assert_eq!(
            m.open_for("iam-access-key-secret:AKIA1", &sealed).unwrap(),
            b"secret"
        );
        assert!(m.open_for("iam-access-key-secret:AKIA2", &sealed).is_err());
        let other = MasterKey::new(&[8u8; 32]).unwrap();
        assert!(
            other
                .open_for("iam-access-key-secret:AKIA1", &sealed)
                .is_err()
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(m.open_for("iam-access-key-secret:AKIA1", &altered).is_err());
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    proptest! {
        /// Sealed values altered anywhere (or cut short) never open.
        #[test]
        fn altered_sealed_values_never_open(plain in proptest::collection::vec(any::<u8>(), 0..64), pos in any::<usize>(), flip in 1u8..=255, cut in any::<bool>()) {
            let m = MasterKey::new(&[9u8; 32]).unwrap();
            let mut sealed = m.seal_for("sts-session-token:v1", &plain);
            prop_assert_eq!(m.open_for("sts-session-token:v1", &sealed).unwrap(), plain);
            if cut {
                sealed.truncate(pos % sealed.len());
            } else {
                let i = pos % sealed.len();
                sealed[i] ^= flip;
            }
            prop_assert!(m.open_for("sts-session-token:v1", &sealed).is_err());
        }
    }

    #[test]
    fn master_keys_are_32_bytes() {
        assert!(MasterKey::new(&[7u8; 32]).is_ok());
        assert_eq!(MasterKey::new(&[7u8; 16]).unwrap_err(), BadMasterKey(16));
    }

    #[test]
    fn material_unwraps_only_for_its_key_version_and_master_key() {
        let master = MasterKey::new(&[1u8; 32]).unwrap();
        let wrapped = master.new_material(ARN, 1);
        assert!(master.unwrap_material(ARN, 1, &wrapped).is_ok());
        assert!(master.unwrap_material(ARN, 2, &wrapped).is_err());
        assert!(
            master
                .unwrap_material(&ARN.replace("1234abcd", "ffffffff"), 1, &wrapped)
                .is_err()
        );
        let other = MasterKey::new(&[2u8; 32]).unwrap();
        assert!(other.unwrap_material(ARN, 1, &wrapped).is_err());
        assert!(master.unwrap_material(ARN, 1, &wrapped[..10]).is_err());
    }

    #[test]
    fn blobs_name_their_key_and_version_and_open_with_their_context_only() {
        let master = MasterKey::new(&[1u8; 32]).unwrap();
        let cipher = master
            .unwrap_material(ARN, 3, &master.new_material(ARN, 3))
            .unwrap();
        let c = ctx(&[("SecretARN", "arn:x"), ("SecretVersionId", "v1")]);
        let blob = cipher.seal_blob(ID, 3, b"hunter2", &c);
        assert_eq!(blob.len(), blob_len(ID.len(), 7));
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
        let parsed = Blob::parse(&blob).unwrap();
        assert_eq!((parsed.key_id, parsed.version), (ID, 3));
        assert_eq!(parsed.open(&cipher, &c).unwrap(), b"hunter2");
        assert!(
            parsed
                .open(&cipher, &ctx(&[("SecretARN", "arn:x")]))
                .is_err()
        );
        assert!(parsed.open(&cipher, &BTreeMap::new()).is_err());
        let other = master
            .unwrap_material(ARN, 4, &master.new_material(ARN, 4))
            .unwrap();
        assert!(parsed.open(&other, &c).is_err());
    }

    #[test]
    fn a_changed_header_fails_to_open() {
        let master = MasterKey::new(&[1u8; 32]).unwrap();
        let cipher = master
            .unwrap_material(ARN, 1, &master.new_material(ARN, 1))
            .unwrap();
        let mut blob = cipher.seal_blob(ID, 1, b"x", &BTreeMap::new());
        // Claim another version: the header is authenticated.
        let at = 2 + ID.len() + 3;
        blob[at] = 2;
        let parsed = Blob::parse(&blob).unwrap();
        assert_eq!(parsed.version, 2);
        assert!(parsed.open(&cipher, &BTreeMap::new()).is_err());
    }

    #[test]
    fn contexts_do_not_collide_by_concatenation() {
        assert_ne!(
            context_aad(&ctx(&[("ab", "c")])),
            context_aad(&ctx(&[("a", "bc")]))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let master = MasterKey::new(&[1u8; 32]).unwrap();
            let cipher = master.unwrap_material(ARN, 1, &master.new_material(ARN, 1)).unwrap();
            if let Some(b) = Blob::parse(&bytes) {
                prop_assert!(b.open(&cipher, &BTreeMap::new()).is_err());
            }
        }

        #[test]
        fn every_plaintext_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..300), k in "[a-z]{0,8}", v in "[a-z]{0,8}") {
            let master = MasterKey::new(&[9u8; 32]).unwrap();
            let cipher = master.unwrap_material(ARN, 1, &master.new_material(ARN, 1)).unwrap();
            let c = ctx(&[(k.as_str(), v.as_str())]);
            let blob = cipher.seal_blob(ID, 1, &plain, &c);
            prop_assert_eq!(Blob::parse(&blob).unwrap().open(&cipher, &c).unwrap(), plain);
        }
    }
}
