"""TLS for the encrypted transports: server contexts, upstream client contexts, the demo
certificate, and what a certificate names.

Listeners speak TLS 1.3 only: the Structured DNS Error draft (security considerations)
lets clients rely on SDE data only over transports based on TLS 1.3 or later, and every
DoT, DoH and DoQ client in use speaks it. A server context is made once per certificate
and ALPN set and kept (``server_context``): made in the process that forks the workers,
its session-ticket key is the same in every worker, so a client resumes its TLS session
(RFC 8446 section 2.2) whichever worker the kernel hands its next connection to.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from clearwall.errors import ConfigError

ALPN_DOT = "dot"  # RFC 7858 section 3.1 (IANA ALPN registry)
ALPN_DOQ = "doq"  # RFC 9250 section 4.1
ALPN_DOH = ("h2", "http/1.1")  # RFC 8484 section 5.2: HTTP/2 preferred


@functools.cache
def server_context(cert: str, key: str, alpn: tuple[str, ...]) -> ssl.SSLContext:
    """A TLS 1.3 server context for ``cert``/``key`` offering ``alpn`` (kept per
    arguments, see the module docstring); ConfigError names the file that fails."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[dns] tls_cert/tls_key ({cert}, {key}): {exc}") from exc
    ctx.set_alpn_protocols(list(alpn))
    # Two tickets per handshake (OpenSSL's default) let a client open two resumed
    # connections; compression stays off (CRIME).
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def client_context(ca_file: str = "", alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A verifying client context (TLS 1.2 or later) for encrypted upstreams: the CAs of
    ``ca_file``, else the system's trust store; hostname (or IP address) checked."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def certificate_names(cert: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the first certificate of the PEM file ``cert`` is valid
    for (subjectAltName; the subject's CN when there is no DNS name)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        pem = Path(cert).read_bytes()
        certificate = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[dns] tls_cert {cert}: {exc}") from exc
    names: list[str] = []
    ips: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    if not names:
        names = [
            str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return names, ips


def fingerprint(cert: str) -> str:
    """The SHA-256 fingerprint of the certificate in ``cert`` (PEM), as colon-separated hex."""
    der = ssl.PEM_cert_to_DER_cert(Path(cert).read_text(encoding="ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def spki_pin(cert: str) -> str:
    """The base64 SHA-256 of the certificate's public key (RFC 7858 section 4.2 SPKI pin,
    what ``kdig +tls-pin=`` takes)."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificate = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def make_self_signed(
    cert: Path,
    key: Path,
    name: str = "clearwall.localhost",
    addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
    days: int = 365,
) -> str:
    """Write a self-signed ECDSA P-256 certificate for ``name`` and ``addresses`` and its
    key (mode 0600) unless both exist; return the certificate's SHA-256 fingerprint."""
    if cert.exists() and key.exists():
        return fingerprint(str(cert))
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(name)]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    key.parent.mkdir(parents=True, exist_ok=True)
    cert.parent.mkdir(parents=True, exist_ok=True)
    pem_key = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem_key)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return fingerprint(str(cert))
