"""A throwaway certificate authority, serving and client certificates for the sandbox control plane.

Elliptic-curve keys (P-256) keep generation instant; every component accepts them, including the
service-account token signer (ES256).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
API_SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
#: client identities: file stem -> (common name = user, organization = group or None)
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("kubernetes-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "kwok": ("system:kwok-controller", "system:masters"),
    "lws-controller": ("system:lws-controller", "system:masters"),  # lws.py, when the sandbox runs LWS
}
#: the real node's identities (created only when the sandbox runs one): the kubelet authenticates as its
#: node (the Node authorizer and NodeRestriction scope it), kube-proxy as the user the built-in
#: system:node-proxier binding names, kube-router as a user bound to its own ClusterRole (realnode.py), and
#: the API server to kubelets as a member of system:masters (logs, exec, port-forward).
NODE_CLIENTS: dict[str, tuple[str, str | None]] = {
    "kube-proxy": ("system:kube-proxy", None),
    "kube-router": ("system:kube-router", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate (or public key) and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of everything the control plane needs, under one directory."""

    directory: Path

    @property
    def ca(self) -> KeyPair:
        return KeyPair(self.directory / "ca.crt", self.directory / "ca.key")

    @property
    def apiserver(self) -> KeyPair:
        return KeyPair(self.directory / "apiserver.crt", self.directory / "apiserver.key")

    @property
    def service_accounts(self) -> KeyPair:
        """The token signing key; ``cert`` is the public key (not a certificate)."""
        return KeyPair(self.directory / "sa.pub", self.directory / "sa.key")

    def client(self, name: str) -> KeyPair:
        """The client certificate of one of :data:`CLIENTS`."""
        return KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")

    def kubelet_serving(self) -> KeyPair:
        """The real node's kubelet serving certificate (see :meth:`create_node`)."""
        return KeyPair(self.directory / "kubelet-serving.crt", self.directory / "kubelet-serving.key")

    def create(self, service_ip: str, extra_ips: tuple[str, ...] = ()) -> None:
        """Generate the CA, the API server's serving certificate (valid for loopback, ``service_ip`` and
        ``extra_ips``), the token key and every client cert."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = _new_key()
        ca_cert = _sign(
            _builder(_name("modelyard-sandbox-ca"), ca_key).add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            ),
            ca_key,
            None,
        )
        _write(self.ca, ca_cert, ca_key)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in API_SERVER_NAMES]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", service_ip, *extra_ips)]
        key = _new_key()
        builder = _builder(_name("kube-apiserver"), key, ca_cert)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        server_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(server_auth, critical=False)
        _write(self.apiserver, _sign(builder, ca_key, ca_cert), key)
        for stem, (user, group) in CLIENTS.items():
            self._issue_client(stem, user, group, ca_cert, ca_key)
        sa_key = _new_key()
        self.service_accounts.cert.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        _write_key(self.service_accounts.key, sa_key)

    def create_node(self, node_name: str, node_ip: str) -> None:
        """Certificates of the real node, signed by the CA :meth:`create` made: the kubelet's client
        certificate (``system:node:<node_name>`` in ``system:nodes``, stem ``kubelet``), its serving
        certificate for ``node_ip``, and one per :data:`NODE_CLIENTS`."""
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        self._issue_client("kubelet", f"system:node:{node_name}", "system:nodes", ca_cert, ca_key)
        for stem, (user, group) in NODE_CLIENTS.items():
            self._issue_client(stem, user, group, ca_cert, ca_key)
        key = _new_key()
        builder = _builder(_name(f"system:node:{node_name}", "system:nodes"), key, ca_cert)
        sans = [x509.DNSName(node_name), x509.IPAddress(ipaddress.ip_address(node_ip))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        _write(self.kubelet_serving(), _sign(builder, ca_key, ca_cert), key)

    def issue_serving(self, stem: Path, common_name: str, ips: tuple[str, ...]) -> KeyPair:
        """A serving certificate for ``ips`` signed by the CA :meth:`create` made, written to
        ``<stem>.crt``/``<stem>.key`` (a webhook server's)."""
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = _new_key()
        builder = _builder(_name(common_name), key, ca_cert)
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        pair = KeyPair(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        _write(pair, _sign(builder, ca_key, ca_cert), key)
        return pair

    def _issue_client(
        self,
        stem: str,
        user: str,
        group: str | None,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        key = _new_key()
        builder = _builder(_name(user, group), key, ca_cert).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        _write(self.client(stem), _sign(builder, ca_key, ca_cert), key)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None = None
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _sign(
    builder: x509.CertificateBuilder, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate | None
) -> x509.Certificate:
    if ca_cert is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def _write(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
