"""A real Kubernetes control plane for tests: etcd and kube-apiserver on loopback, no Docker.

``start_control_plane(directory, etcd=..., kube_apiserver=...)`` generates a CA, a serving
certificate for 127.0.0.1 and a service-account signing key (with ``cryptography``), starts
etcd (data dir, log) and kube-apiserver (log) under ``directory`` on free loopback ports,
waits until ``/readyz`` answers 200 to the admin token, and writes a kubeconfig for it.
The binaries come from ``scripts/build-etcd.sh`` and ``scripts/build-kube-apiserver.sh``.

What this control plane is and is not:

* Authentication is one static token (``--token-auth-file``) for user ``admin`` in group
  ``system:masters``; authorization is ``RBAC`` (``system:masters`` is always allowed), so
  the bootstrap cluster roles exist as on a real cluster.
* There is no kube-controller-manager, scheduler or kubelet: objects are stored and
  validated (defaulting, admission, server-side validation, dry-run, server-side apply all
  work), but nothing reconciles them. A Deployment never gets a ReplicaSet or Pods, a
  deleted Namespace stays ``Terminating`` (the namespace controller would empty it), and no
  ``default`` ServiceAccount is created in new namespaces. For that last reason the
  ``ServiceAccount`` admission plugin is disabled, so Pods can be created directly; every
  other default admission plugin stays on.
* etcd runs with ``--unsafe-no-fsync``: its data only has to outlive the test session.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONTEXT = "mlform-test"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
LOG_TAIL_LINES = 25


class ControlPlaneError(RuntimeError):
    """The control plane did not start (the message ends with the tail of both logs)."""


@dataclass(frozen=True)
class ControlPlane:
    """A running etcd + kube-apiserver pair; :meth:`stop` ends both."""

    kubeconfig: Path
    context: str
    server: str
    token: str
    ca_file: Path
    etcd_url: str
    processes: tuple[subprocess.Popen[bytes], ...] = field(repr=False, compare=False)
    logs: tuple[Path, ...] = field(repr=False, compare=False)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, then SIGKILL after 10 s); idempotent."""
        _stop_all(self.processes)


def start_control_plane(
    directory: Path,
    *,
    etcd: Path,
    kube_apiserver: Path,
    timeout: float = 90.0,
    authorization_mode: str = "RBAC",
    extra_apiserver_args: Sequence[str] = (),
) -> ControlPlane:
    """Start etcd and kube-apiserver with their files under ``directory`` and wait for ready.

    Raises :class:`ControlPlaneError` (with the last lines of both logs) when either process
    exits or ``/readyz`` does not answer 200 within ``timeout`` seconds.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = directory / "pki"
    pki.mkdir(exist_ok=True)
    ca_file, cert_file, key_file = _write_serving_pki(pki)
    sa_key = pki / "service-account.key"
    sa_pub = pki / "service-account.pub"
    _write_signing_key(sa_key, sa_pub)
    token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    tokens = pki / "tokens.csv"
    tokens.write_text(f'{token},admin,admin,"system:masters"\n')
    tokens.chmod(0o600)

    client_port, peer_port, secure_port = _free_ports(3)
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{secure_port}"
    etcd_log = directory / "etcd.log"
    apiserver_log = directory / "kube-apiserver.log"
    etcd_args = [
        str(etcd),
        "--name=mlform-test",
        f"--data-dir={directory / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=mlform-test={peer_url}",
        "--unsafe-no-fsync",
    ]
    apiserver_args = [
        str(kube_apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        # The endpoint reconciler refuses a loopback advertise address: the `kubernetes`
        # Service in `default` is still created, without endpoints.
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--secure-port={secure_port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={cert_file}",
        f"--tls-private-key-file={key_file}",
        f"--token-auth-file={tokens}",
        f"--authorization-mode={authorization_mode}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={sa_pub}",
        f"--service-account-signing-key-file={sa_key}",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        *extra_apiserver_args,
    ]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_spawn(etcd_args, etcd_log, directory))
        processes.append(_spawn(apiserver_args, apiserver_log, directory))
        _wait_ready(server, token, ca_file, processes, (etcd_log, apiserver_log), timeout)
    except BaseException:
        _stop_all(processes)
        raise
    kubeconfig = directory / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, ca_file, token)
    # kube-apiserver first: it is the client of etcd.
    return ControlPlane(
        kubeconfig=kubeconfig,
        context=CONTEXT,
        server=server,
        token=token,
        ca_file=ca_file,
        etcd_url=etcd_url,
        processes=tuple(reversed(processes)),
        logs=(etcd_log, apiserver_log),
    )


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so that none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def _stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"  ({exc})"
    return "\n".join(f"  {line}" for line in text[-lines:]) or "  (empty)"


def _logs_tail(logs: Sequence[Path]) -> str:
    return "\n".join(f"last lines of {log}:\n{_tail(log)}" for log in logs)


def _wait_ready(
    server: str,
    token: str,
    ca_file: Path,
    processes: Sequence[subprocess.Popen[bytes]],
    logs: Sequence[Path],
    timeout: float,
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(
        f"{server}/readyz", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        for process in processes:
            if process.poll() is not None:
                raise ControlPlaneError(
                    f"{Path(str(process.args[0])).name} exited with code "  # type: ignore[index]
                    f"{process.returncode} before {server}/readyz answered\n{_logs_tail(logs)}"
                )
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            body = exc.read(20000).decode(errors="replace")
            failing = [line for line in body.splitlines() if line.startswith("[-]")]
            last = f"HTTP {exc.code}: {'; '.join(failing) or body.strip()[:500]}"
        except (OSError, ssl.SSLError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise ControlPlaneError(
                f"{server}/readyz did not answer 200 within {timeout:g} s "
                f"(last: {last})\n{_logs_tail(logs)}"
            )
        time.sleep(0.1)


def _write_serving_pki(pki: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a serving certificate for 127.0.0.1 and the in-cluster names."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlform-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName(name)
        for name in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = pki / "ca.crt"
    cert_file = pki / "apiserver.crt"
    key_file = pki / "apiserver.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_private_pem(key))
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


def _write_signing_key(private: Path, public: Path) -> None:
    """The service-account token signing key (ES256) and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    private.write_bytes(_private_pem(key))
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    """One cluster (CA inline), one token user, one context, current. JSON is valid YAML."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "admin"}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
