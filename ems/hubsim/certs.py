"""Certificates for a local stand-in of Azure IoT Hub: a CA, the broker's server certificate, device certificates.

All keys are EC P-256 (fast to make: a whole set takes milliseconds). The server certificate names
`localhost` and `127.0.0.1`, so a device client that checks the host name (the Azure SDK does) accepts it
when told to trust the CA (`server_verification_cert=ca.cert_pem`). Device certificates are client
certificates (CN = the device id) for X.509 authentication; the broker trusts them when it trusts the CA.

Everything is written as PEM files into a directory the caller names; nothing is kept elsewhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 30


@attrs.frozen
class KeyPair:
    """A certificate and its private key, as PEM files on disk."""

    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_file.read_text()


@attrs.frozen
class CertificateAuthority:
    """A self-signed CA that signs server and device certificates into `directory`."""

    name: str
    directory: Path
    _key: ec.EllipticCurvePrivateKey
    _cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str = "hubsim-ca") -> CertificateAuthority:
        """Make a new CA; its certificate is `<directory>/<name>.crt` (its key `<name>.key`)."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        not_before, not_after = _validity()
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        ca = cls(name=name, directory=directory, key=key, cert=cert)
        _write(directory / f"{name}.crt", directory / f"{name}.key", cert, key)
        return ca

    @property
    def cert_file(self) -> Path:
        return self.directory / f"{self.name}.crt"

    @property
    def cert_pem(self) -> str:
        """The CA certificate, for a client's `server_verification_cert` or the broker's `cafile`."""
        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def server_cert(self, name: str = "server", hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> KeyPair:
        """A TLS server certificate for `hosts` (DNS names and IP addresses), signed by this CA."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(name, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def device_cert(self, device_id: str) -> KeyPair:
        """A client certificate with CN = `device_id`, for X.509 authentication of that device."""
        return self._issue(f"device-{device_id}", device_id, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def _issue(self, name: str, common_name: str, usage: x509.ObjectIdentifier,
               sans: list[x509.GeneralName]) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = _validity()
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self._cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=True,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = KeyPair(cert_file=self.directory / f"{name}.crt", key_file=self.directory / f"{name}.key")
        _write(pair.cert_file, pair.key_file, cert, key)
        return pair


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=VALID_DAYS)


def _write(cert_file: Path, key_file: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
