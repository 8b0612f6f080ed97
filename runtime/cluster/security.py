"""The cluster's secrets: the Raft password, the nodes' CURVE keys and who may command.

Nothing of the cluster listens unauthenticated (docs/cluster.md, "Security"):

* Raft (pysyncobj) frames are encrypted and authenticated with a per-cluster password, read
  from `[cluster] secret_file` (a file of its own, mode 0600, never the io_map); without it
  pysyncobj would unpickle whatever reaches its port.
* ZeroMQ uses CURVE: every node has a key pair in `[cluster] keys_dir` (`<node>.key_secret`,
  and every node's public `<node>.key`). A node accepts state and setpoints only from the
  members' keys, and commands (its REP socket) only from the members and the command keys
  named in `[cluster] command_keys` (the `ems cluster` tool's, `cli` by default).
* Discovery beacons carry an HMAC made with the same secret; others are dropped.

`ems cluster keys --io-map FILE` makes all of them (`generate`). A lab may run without, with
`[cluster] insecure_lab = true`, which is logged loudly at every start.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import attrs
import zmq.auth

from runtime.config.schema import ClusterConfig
from runtime.secret_files import SecretFileError, read_private, resolve

SECRET_BYTES = 32
MIN_SECRET_CHARS = 32


class SecurityError(SecretFileError):
    """A secret or key file of the cluster that is missing, unreadable or exposed (one line)."""


@attrs.frozen
class ClusterSecrets:
    """What one node needs to talk to its cluster authenticated. All None in insecure lab mode."""

    password: str | None = None  # pysyncobj's
    public_key: bytes | None = None  # this node's CURVE key pair (Z85)
    secret_key: bytes | None = None
    member_keys: dict[str, bytes] = attrs.Factory(dict)  # node id -> public key
    command_keys: dict[bytes, str] = attrs.Factory(dict)  # public key -> who (members and tools)

    @property
    def secure(self) -> bool:
        """CURVE on: this node's (or tool's) key pair is loaded."""
        return self.secret_key is not None

    def beacon_mac(self, body: bytes) -> str:
        """HMAC-SHA256 of a discovery beacon, keyed by the cluster secret."""
        key = hashlib.sha256(b"ems-discovery:" + (self.password or "").encode()).digest()
        return hmac.new(key, body, hashlib.sha256).hexdigest()


def load(cfg: ClusterConfig, base: Path, client: str | None = None) -> ClusterSecrets:
    """The secrets of `cfg`'s own node, or of the command tool `client` (its key pair and the
    nodes' public keys, not the Raft password); raises SecurityError."""
    if cfg.insecure_lab:
        return ClusterSecrets()
    password = None if client else _read_secret(resolve(cfg.secret_file, base))
    keys_dir = resolve(cfg.keys_dir, base)
    members = {node.id: _public_key(keys_dir / f"{node.id}.key") for node in cfg.nodes}
    public, secret = _key_pair(keys_dir / f"{client or cfg.node_id}.key_secret")
    commanders = {key: node for node, key in members.items()}
    for name in cfg.command_keys:
        commanders[_public_key(keys_dir / f"{name}.key")] = name
    return ClusterSecrets(password, public, secret, members, commanders)


def generate(cfg: ClusterConfig, base: Path) -> list[Path]:
    """Make the secret file and a key pair per node and per command key; keep what exists."""
    made: list[Path] = []
    secret_path = resolve(cfg.secret_file, base)
    if not secret_path.exists():
        secret_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
        made.append(secret_path)
    keys_dir = resolve(cfg.keys_dir, base)
    keys_dir.mkdir(parents=True, exist_ok=True)
    for name in [n.id for n in cfg.nodes] + list(cfg.command_keys):
        if (keys_dir / f"{name}.key_secret").exists():
            continue
        public, secret = zmq.auth.create_certificates(str(keys_dir), name)
        os.chmod(secret, 0o600)
        made += [Path(public), Path(secret)]
    return made


def _private_file(path: Path, what: str) -> bytes:
    return read_private(path, what, "make it with: ems cluster keys --io-map FILE", SecurityError)


def _read_secret(path: Path) -> str:
    text = _private_file(path, "cluster secret file").decode("utf-8", errors="replace").strip()
    if len(text) < MIN_SECRET_CHARS:
        raise SecurityError(f"cluster secret file {path} holds {len(text)} characters; it needs at least "
                            f"{MIN_SECRET_CHARS} (ems cluster keys makes one)")
    return text


def _key_pair(path: Path) -> tuple[bytes, bytes]:
    _private_file(path, "secret key file")
    public, secret = _certificate(path)
    if secret is None:
        raise SecurityError(f"secret key file {path} holds no secret key")
    return public, secret


def _public_key(path: Path) -> bytes:
    return _certificate(path)[0]


def _certificate(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"key file {path}: {exc}") from None
