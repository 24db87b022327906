"""Key material: RSA keys, JWKs, libtrust key ids and the registry's signing certificate."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

KEY_FILE = "registry-signing-key.pem"
CERT_FILE = "registry-signing-cert.pem"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_private_pem(pem: str | bytes) -> rsa.RSAPrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    return serialization.load_pem_private_key(data, password=None)


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, kid: str) -> dict:
    """The public half as a JWK, the way an OIDC issuer publishes it in keys.json."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    jwk = json.loads(RSAAlgorithm.to_jwk(public))
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": jwk["n"], "e": jwk["e"]}


def key_from_jwk(jwk: dict) -> rsa.RSAPublicKey:
    return RSAAlgorithm.from_jwk(json.dumps(jwk))


def libtrust_kid(public_key) -> str:
    """distribution 2.8 looks a token's signing key up by this fingerprint (registry-auth.md §6)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def ensure_registry_signing_material(directory: str | os.PathLike) -> tuple[str, str]:
    """Create (once) the realm's RSA-2048 key and a self-signed CA cert for `rootcertbundle`.

    Returns (key_pem_path, cert_pem_path); existing files are reused so a registry
    configured earlier keeps trusting the key.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return str(key_path), str(cert_path)
    key = new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emulated-artifact-registry")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    # Write the key with owner-only permissions: it is a signing secret.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)
